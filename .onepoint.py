import asyncio, json, os, resource, subprocess, sys, uuid
from pathlib import Path
import bench  # admin override
import settings
from bench.fanout.points import Point, Setup, measure
from bench.fanout.run import HERE, prime
from ws_server.config import Naming
_s, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
binary = Path("/tmp/shfeeds-loadgen-0")
subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "loadgen", check=True)
s = settings.load(); prefix = f"benchcap-{uuid.uuid4().hex[:8]}"; naming = Naming(prefix + ".", prefix)
asyncio.run(prime(s.kafka_bootstrap, s.redis_url, naming))
setup = Setup(s.kafka_bootstrap, naming, binary, 18930, float(sys.argv[1]), "0", "1")
for spec in sys.argv[2:]:
    mode, clients, views, rate, procs, storm = spec.split(":")
    r = measure(Point(mode, int(clients), int(views), int(rate), int(procs), storm == "1"), setup)
    print(json.dumps(r))
