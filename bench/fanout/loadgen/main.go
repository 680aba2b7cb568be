// Load generator for bench/fanout: thousands of protocol v1 clients with mixed subscriptions.
//
// It reads commands on stdin (measure, stop, resume, quit) so the Python runner can script phases, and
// prints one JSON object per phase on stdout. Frames are not fully parsed: records are counted by their
// "sent_ms" field and latency is taken from the first record of each frame (the oldest in it).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const histMax = 20000 // milliseconds

var (
	deliveries atomic.Int64
	frames     atomic.Int64
	bytesIn    atomic.Int64
	gaps       atomic.Int64
	hist       [histMax + 1]atomic.Int64
	sentKey    = []byte(`"sent_ms":`)
	seqKey     = []byte(`"seq":`)
	deltaHead  = []byte(`{"type":"delta"`)
)

type client struct {
	n      int
	sub    map[string]any
	conn   *websocket.Conn
	epoch  string
	seq    int64
	ready  chan struct{}
	status string // "subscribed", "resumed", "reset"
	mu     sync.Mutex
}

func subscription(n int, rng *rand.Rand) map[string]any {
	districts := []string{"310101", "310104", "310105", "310106", "310107", "310109", "310110", "310112",
		"310113", "310114", "310115", "310116", "310117", "310118", "310120", "310151"}
	var filter map[string]any
	switch p := n % 20; {
	case p < 10: // half: a district
		filter = map[string]any{"district": districts[rng.Intn(len(districts))]}
	case p < 16: // 30 %: a map viewport from a set of 60 (phones showing popular areas)
		v := rng.Intn(60)
		x := 121.30 + float64(v%10)*0.04
		y := 31.05 + float64(v/10)*0.05
		filter = map[string]any{"bbox": []float64{x, y, x + 0.08, y + 0.06}}
	case p < 19: // 15 %: near one of 40 points, 2 km
		v := rng.Intn(40)
		filter = map[string]any{"near": map[string]any{"lng": 121.35 + float64(v%8)*0.05, "lat": 31.10 + float64(v/8)*0.06, "radius_m": 2000}}
	default: // 5 %: the whole feed (e.g. a journey planner back end)
		filter = map[string]any{}
	}
	// District and whole-feed subscribers skip the snapshot (back ends that keep their own state); the
	// small-area ones take it, as a phone opening the map does.
	_, district := filter["district"]
	snapshot := !district && len(filter) > 0
	return map[string]any{"type": "subscribe", "id": "s", "feed": "bus", "filter": filter, "options": map[string]any{"snapshot": snapshot}}
}

func parseInt(b []byte, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	j := i + len(key)
	k := j
	for k < len(b) && b[k] >= '0' && b[k] <= '9' {
		k++
	}
	v, err := strconv.ParseInt(string(b[j:k]), 10, 64)
	return v, err == nil
}

func (c *client) run(url string, resume bool, connected *sync.WaitGroup) {
	dialer := websocket.Dialer{Subprotocols: []string{"shfeeds.v1.json"}, HandshakeTimeout: 60 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}
	var conn *websocket.Conn
	var err error
	for attempt := 0; ; attempt++ {
		conn, _, err = dialer.Dial(url, http.Header{})
		if err == nil {
			break
		}
		time.Sleep(time.Duration(50+rand.Intn(200*(attempt+1))) * time.Millisecond)
	}
	c.mu.Lock()
	c.conn = conn
	msg := c.sub
	if resume && c.epoch != "" {
		msg = map[string]any{}
		for k, v := range c.sub {
			msg[k] = v
		}
		msg["resume"] = map[string]any{"epoch": c.epoch, "seq": c.seq}
	}
	c.mu.Unlock()
	data, _ := json.Marshal(msg)
	conn.WriteMessage(websocket.TextMessage, data)
	signalled := false
	for {
		_, frame, err := conn.ReadMessage()
		if err != nil {
			if !signalled {
				connected.Done()
			}
			return
		}
		bytesIn.Add(int64(len(frame)))
		if bytes.HasPrefix(frame, deltaHead) {
			seq, _ := parseInt(frame, seqKey)
			plain := !bytes.Contains(frame[:min(len(frame), 200)], []byte(`"conflated"`)) && !bytes.Contains(frame[:min(len(frame), 200)], []byte(`"diff"`))
			if plain && c.seq != 0 && seq != c.seq+1 {
				gaps.Add(1)
			}
			c.seq = seq
			n := int64(bytes.Count(frame, sentKey))
			frames.Add(1)
			deliveries.Add(n)
			if sent, ok := parseInt(frame, sentKey); ok {
				lat := time.Now().UnixMilli() - sent
				if lat < 0 {
					lat = 0
				}
				if lat > histMax {
					lat = histMax
				}
				hist[lat].Add(n)
			}
			continue
		}
		c.handleControl(frame, &signalled, connected)
	}
}

func (c *client) handleControl(frame []byte, signalled *bool, connected *sync.WaitGroup) {
	var head struct {
		Type    string `json:"type"`
		Epoch   string `json:"epoch"`
		Seq     int64  `json:"seq"`
		Resumed bool   `json:"resumed"`
		Last    bool   `json:"last"`
		Code    string `json:"code"`
	}
	probe := frame
	if i := bytes.Index(frame, []byte(`,"records"`)); i > 0 {
		probe = append(append([]byte{}, frame[:i]...), '}')
	}
	if err := json.Unmarshal(probe, &head); err != nil {
		return
	}
	switch head.Type {
	case "subscribed":
		c.epoch, c.seq = head.Epoch, head.Seq
		if head.Resumed || c.sub["options"].(map[string]any)["snapshot"] == false {
			if !head.Resumed && c.status == "" {
				c.status = "subscribed"
			}
			if head.Resumed {
				c.status = "resumed"
			}
			if !*signalled {
				*signalled = true
				connected.Done()
			}
		}
	case "reset":
		c.epoch, c.seq = head.Epoch, head.Seq
		c.status = "reset"
	case "snapshot":
		c.seq = head.Seq
		if head.Last && !*signalled {
			if c.status == "" {
				c.status = "subscribed"
			}
			*signalled = true
			connected.Done()
		}
	case "error":
		fmt.Fprintf(os.Stderr, "client %d: error %s\n", c.n, head.Code)
	}
}

func percentile(p float64) int {
	var total int64
	for i := range hist {
		total += hist[i].Load()
	}
	if total == 0 {
		return -1
	}
	want := int64(float64(total) * p)
	var acc int64
	for i := range hist {
		acc += hist[i].Load()
		if acc >= want {
			return i
		}
	}
	return histMax
}

func reset() {
	deliveries.Store(0)
	frames.Store(0)
	bytesIn.Store(0)
	gaps.Store(0)
	for i := range hist {
		hist[i].Store(0)
	}
}

func emit(v map[string]any) {
	data, _ := json.Marshal(v)
	fmt.Println(string(data))
}

func connectAll(clients []*client, url string, resume bool, parallel int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(len(clients))
	started := time.Now()
	gate := make(chan struct{}, parallel)
	for _, c := range clients {
		gate <- struct{}{}
		go func(c *client) {
			<-gate
			c.run(url, resume, &wg)
		}(c)
	}
	wg.Wait()
	return time.Since(started)
}

func main() {
	url := flag.String("url", "ws://127.0.0.1:18765/", "server URL")
	n := flag.Int("clients", 10000, "concurrent clients")
	parallel := flag.Int("parallel", 1000, "handshakes in flight")
	flag.Parse()
	rng := rand.New(rand.NewSource(2019))
	clients := make([]*client, *n)
	for i := range clients {
		clients[i] = &client{n: i, sub: subscription(i, rng)}
	}
	took := connectAll(clients, *url, false, *parallel)
	emit(map[string]any{"phase": "connected", "clients": *n, "seconds": took.Seconds()})
	var measureStart time.Time
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		switch scanner.Text() {
		case "measure":
			reset()
			measureStart = time.Now()
		case "stop":
			secs := time.Since(measureStart).Seconds()
			emit(map[string]any{
				"phase": "measured", "seconds": secs,
				"deliveries_per_s": float64(deliveries.Load()) / secs,
				"frames_per_s":     float64(frames.Load()) / secs,
				"mb_per_s":         float64(bytesIn.Load()) / secs / 1e6,
				"p50_ms":           percentile(0.50), "p99_ms": percentile(0.99),
				"gaps": gaps.Load(),
			})
		case "resume":
			reset()
			for _, c := range clients {
				c.mu.Lock()
				if c.conn != nil {
					c.conn.UnderlyingConn().Close() // the network drops: no close handshake
				}
				c.status = ""
				c.mu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
			took := connectAll(clients, *url, true, *parallel)
			resumed, resets := 0, 0
			for _, c := range clients {
				if c.status == "resumed" {
					resumed++
				} else {
					resets++
				}
			}
			emit(map[string]any{"phase": "resumed", "seconds": took.Seconds(), "resumed": resumed, "reset": resets})
		case "gaps":
			emit(map[string]any{"phase": "gaps", "gaps": gaps.Load(), "deliveries": deliveries.Load()})
		case "quit":
			return
		}
	}
}
