"""Who may do what on Kafka and Redis: one principal per component, its grants, and its credentials.

- ``principals.py``: the table of principals and what each may read and write (data, checked by tests and
  rendered in docs/security.md).
- ``credentials.py``: where a principal's password comes from (environment, or a development file).
- ``identity.py``: which principal this process is, and the client settings that follow (aiokafka keyword
  arguments, Faust credentials, the Redis URL): every component connects through it.
- ``kafka_acls.py`` and ``redis_acls.py``: make the brokers and Redis enforce the table (run by
  ``shfeeds kafka-principal setup``, which ``shfeeds stack up`` runs).
"""
