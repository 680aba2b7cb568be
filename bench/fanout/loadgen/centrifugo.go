// Centrifugo's JSON client protocol, for the peer run in bench/peers/centrifugo.py: each client connects,
// subscribes to the one channel that stands for its filter (one channel per distinct filter, named by the
// filter's position in order of first appearance) and counts every record of every publication by its
// "sent_ms" stamp, as it does with our protocol.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

var (
	pingFrame      = []byte("{}")
	subscribeReply = []byte(`"id":2`)
	errorKey       = []byte(`"error"`)
)

// channels gives every client the channel of its filter and returns the distinct filters in channel order.
func channels(clients []*client) []any {
	index := map[string]int{}
	var distinct []any
	for _, c := range clients {
		key, _ := json.Marshal(c.sub["filter"])
		i, ok := index[string(key)]
		if !ok {
			i = len(distinct)
			index[string(key)] = i
			distinct = append(distinct, c.sub["filter"])
		}
		c.channel = fmt.Sprintf("f%d", i)
	}
	return distinct
}

func (c *client) runCentrifugo(url string, connected *sync.WaitGroup) {
	dialer := websocket.Dialer{HandshakeTimeout: 60 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}
	conn := dialWithRetry(dialer, url)
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	hello := fmt.Sprintf("{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":%q}}", c.channel)
	conn.WriteMessage(websocket.TextMessage, []byte(hello))
	signalled := false
	done := func() {
		if !signalled {
			signalled = true
			connected.Done()
		}
	}
	for {
		_, reader, err := conn.NextReader()
		if err != nil {
			countClose(err)
			done()
			return
		}
		buf := buffers.Get().(*bytes.Buffer)
		buf.Reset()
		if _, err := buf.ReadFrom(reader); err != nil {
			buffers.Put(buf)
			done()
			return
		}
		frame := buf.Bytes()
		bytesIn.Add(int64(len(frame)))
		// One frame may hold several replies, one per line; a bare {} is the server's ping.
		for _, line := range bytes.Split(frame, []byte("\n")) {
			if bytes.Equal(line, pingFrame) {
				conn.WriteMessage(websocket.TextMessage, pingFrame)
			}
		}
		if n := recordLatencies(frame, time.Now().UnixMilli()); n > 0 {
			frames.Add(1)
			deliveries.Add(n)
		} else if !signalled && bytes.Contains(frame, subscribeReply) {
			if bytes.Contains(frame, errorKey) {
				fmt.Fprintf(os.Stderr, "client %d: %s\n", c.n, frame)
			}
			done()
		}
		buffers.Put(buf)
	}
}
