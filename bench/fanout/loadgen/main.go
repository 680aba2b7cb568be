// Load generator for bench/fanout: thousands of protocol v1 clients with mixed subscriptions.
//
// It reads commands on stdin (measure, stop, resume, gaps, quit) so the Python runner can script phases,
// and prints one JSON object per phase on stdout. Frames are never fully decoded: a delta's head (type, seq)
// is read by a cheap scan, and every record's "sent_ms" (stamped by the producer) is found by a byte search,
// so the latency histogram counts each record delivery. With -codec msgpack the clients speak the
// shfeeds.v1.msgpack subprotocol (about a third fewer bytes to read than JSON).
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// histMax bounds the histogram's buckets (milliseconds); a later delivery still counts in the last bucket and
// in maxLatency, so a backlog shows as a p99 at the true maximum rather than being clipped.
const histMax = 120000

var (
	deliveries atomic.Int64
	frames     atomic.Int64
	bytesIn    atomic.Int64
	gaps       atomic.Int64
	closes     atomic.Int64 // connections the server closed (or that dropped) while measuring
	slowCloses atomic.Int64 // of them, closed with the protocol's "slow" code
	maxLatency atomic.Int64
	hist       [histMax + 1]atomic.Int64
	sentKey    = []byte(`"sent_ms":`)
	seqKey     = []byte(`"seq":`)
	deltaHead  = []byte(`{"type":"delta"`)
	// MessagePack: the key "sent_ms" as a fixstr, and the head of a delta map ("type": "delta").
	sentKeyMP     = []byte("\xa7sent_ms")
	deltaHeadMP   = []byte("\xa4type\xa5delta")
	useMsgpack    bool
	useCentrifugo bool
)

type client struct {
	n       int
	sub     map[string]any
	conn    *websocket.Conn
	epoch   string
	seq     int64
	ready   chan struct{}
	status  string // "subscribed", "resumed", "reset"
	channel string // with -protocol centrifugo: the channel of its filter
	mu      sync.Mutex
}

// head holds the scalar fields at the start of a server message.
type head struct {
	Type      string
	Epoch     string
	Seq       int64
	Resumed   bool
	Last      bool
	Code      string
	Explained bool // "conflated" or "diff": a delta whose seq need not follow the previous one by one
}

// viewport is a phone's map screen (about 3 × 2.8 km) somewhere in the buses' area, the n-th of a fixed
// seeded sequence, so -viewports N gives N distinct filters whatever the client count.
func viewport(n int) map[string]any {
	rng := rand.New(rand.NewSource(int64(7919*n + 17)))
	x := math.Round((121.20+rng.Float64()*0.57)*1e5) / 1e5
	y := math.Round((30.90+rng.Float64()*0.525)*1e5) / 1e5
	filter := map[string]any{"bbox": []float64{x, y, x + 0.03, y + 0.025}}
	return map[string]any{"type": "subscribe", "id": "s", "feed": "bus", "filter": filter, "options": map[string]any{"snapshot": true}}
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
	v, _, ok := digits(b[i+len(key):])
	return v, ok
}

// digits parses the decimal integer at the start of b; returns it and how many bytes it took.
func digits(b []byte) (int64, int, bool) {
	var v int64
	k := 0
	for k < len(b) && b[k] >= '0' && b[k] <= '9' {
		v = v*10 + int64(b[k]-'0')
		k++
	}
	return v, k, k > 0
}

// mpInt reads a MessagePack integer at the start of b.
func mpInt(b []byte) (int64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch t := b[0]; {
	case t < 0x80:
		return int64(t), 1, true
	case t == 0xcc && len(b) >= 2:
		return int64(b[1]), 2, true
	case t == 0xcd && len(b) >= 3:
		return int64(binary.BigEndian.Uint16(b[1:])), 3, true
	case (t == 0xce || t == 0xd2) && len(b) >= 5:
		return int64(binary.BigEndian.Uint32(b[1:])), 5, true
	case (t == 0xcf || t == 0xd3) && len(b) >= 9:
		return int64(binary.BigEndian.Uint64(b[1:])), 9, true
	}
	return 0, 0, false
}

// recordLatencies adds one histogram entry per record of the frame, from its producer stamp.
func recordLatencies(frame []byte, now int64) int64 {
	key := sentKey
	if useMsgpack {
		key = sentKeyMP
	}
	var n int64
	rest := frame
	for {
		i := bytes.Index(rest, key)
		if i < 0 {
			return n
		}
		rest = rest[i+len(key):]
		var sent int64
		var used int
		var ok bool
		if useMsgpack {
			sent, used, ok = mpInt(rest)
		} else {
			sent, used, ok = digits(rest)
		}
		if !ok {
			continue
		}
		rest = rest[used:]
		lat := now - sent
		if lat < 0 {
			lat = 0
		}
		for seen := maxLatency.Load(); lat > seen && !maxLatency.CompareAndSwap(seen, lat); seen = maxLatency.Load() {
		}
		if lat > histMax {
			lat = histMax
		}
		hist[lat].Add(1)
		n++
	}
}

// mpStr reads a MessagePack string at the start of b.
func mpStr(b []byte) (string, int, bool) {
	if len(b) == 0 {
		return "", 0, false
	}
	switch t := b[0]; {
	case t >= 0xa0 && t <= 0xbf:
		n := int(t & 0x1f)
		if len(b) < 1+n {
			return "", 0, false
		}
		return string(b[1 : 1+n]), 1 + n, true
	case t == 0xd9 && len(b) >= 2:
		n := int(b[1])
		if len(b) < 2+n {
			return "", 0, false
		}
		return string(b[2 : 2+n]), 2 + n, true
	case t == 0xda && len(b) >= 3:
		n := int(binary.BigEndian.Uint16(b[1:]))
		if len(b) < 3+n {
			return "", 0, false
		}
		return string(b[3 : 3+n]), 3 + n, true
	}
	return "", 0, false
}

// readHead decodes the scalar fields at the start of a server message, stopping at the first list or map.
func readHead(frame []byte) (head, bool) {
	var h head
	if !useMsgpack {
		probe := frame
		for _, cut := range [][]byte{[]byte(`,"upsert"`), []byte(`,"records"`)} {
			if i := bytes.Index(frame, cut); i > 0 {
				probe = append(append([]byte{}, frame[:i]...), '}')
				break
			}
		}
		var j struct {
			Type      string `json:"type"`
			Epoch     string `json:"epoch"`
			Seq       int64  `json:"seq"`
			Resumed   bool   `json:"resumed"`
			Last      bool   `json:"last"`
			Code      string `json:"code"`
			Conflated bool   `json:"conflated"`
			Diff      bool   `json:"diff"`
		}
		if err := json.Unmarshal(probe, &j); err != nil {
			return h, false
		}
		return head{j.Type, j.Epoch, j.Seq, j.Resumed, j.Last, j.Code, j.Conflated || j.Diff}, true
	}
	if len(frame) == 0 {
		return h, false
	}
	var count int
	b := frame
	switch t := b[0]; {
	case t >= 0x80 && t <= 0x8f:
		count, b = int(t&0x0f), b[1:]
	case t == 0xde && len(b) >= 3:
		count, b = int(binary.BigEndian.Uint16(b[1:])), b[3:]
	default:
		return h, false
	}
	for ; count > 0 && len(b) > 0; count-- {
		key, used, ok := mpStr(b)
		if !ok {
			return h, false
		}
		b = b[used:]
		if len(b) == 0 {
			return h, false
		}
		switch t := b[0]; {
		case t == 0xc2 || t == 0xc3:
			v := t == 0xc3
			switch key {
			case "resumed":
				h.Resumed = v
			case "last":
				h.Last = v
			case "conflated", "diff":
				h.Explained = h.Explained || v
			}
			b = b[1:]
		case t == 0xc0:
			b = b[1:]
		case (t >= 0xa0 && t <= 0xbf) || t == 0xd9 || t == 0xda:
			v, used, ok := mpStr(b)
			if !ok {
				return h, false
			}
			switch key {
			case "type":
				h.Type = v
			case "epoch":
				h.Epoch = v
			case "code":
				h.Code = v
			}
			b = b[used:]
		default:
			v, used, ok := mpInt(b)
			if !ok {
				return h, true // a list or map: the head is over
			}
			if key == "seq" {
				h.Seq = v
			}
			b = b[used:]
		}
	}
	return h, true
}

// mpPack encodes the few value types a subscribe message holds.
func mpPack(buf *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		buf.WriteByte(0xc0)
	case bool:
		if x {
			buf.WriteByte(0xc3)
		} else {
			buf.WriteByte(0xc2)
		}
	case int:
		mpPack(buf, int64(x))
	case int64:
		buf.WriteByte(0xd3)
		binary.Write(buf, binary.BigEndian, x)
	case float64:
		buf.WriteByte(0xcb)
		binary.Write(buf, binary.BigEndian, math.Float64bits(x))
	case string:
		buf.WriteByte(0xda)
		binary.Write(buf, binary.BigEndian, uint16(len(x)))
		buf.WriteString(x)
	case []float64:
		buf.WriteByte(0xdc)
		binary.Write(buf, binary.BigEndian, uint16(len(x)))
		for _, f := range x {
			mpPack(buf, f)
		}
	case map[string]any:
		buf.WriteByte(0xde)
		binary.Write(buf, binary.BigEndian, uint16(len(x)))
		for k, item := range x {
			mpPack(buf, k)
			mpPack(buf, item)
		}
	default:
		panic(fmt.Sprintf("cannot pack %T", v))
	}
}

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (c *client) run(url string, resume bool, connected *sync.WaitGroup) {
	if useCentrifugo {
		c.runCentrifugo(url, connected)
		return
	}
	proto := "shfeeds.v1.json"
	if useMsgpack {
		proto = "shfeeds.v1.msgpack"
	}
	dialer := websocket.Dialer{Subprotocols: []string{proto}, HandshakeTimeout: 60 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}
	conn := dialWithRetry(dialer, url)
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
	if useMsgpack {
		var buf bytes.Buffer
		mpPack(&buf, msg)
		conn.WriteMessage(websocket.BinaryMessage, buf.Bytes())
	} else {
		data, _ := json.Marshal(msg)
		conn.WriteMessage(websocket.TextMessage, data)
	}
	signalled := false
	for {
		_, reader, err := conn.NextReader()
		if err != nil {
			countClose(err)
			if !signalled {
				connected.Done()
			}
			return
		}
		buf := buffers.Get().(*bytes.Buffer)
		buf.Reset()
		if _, err := buf.ReadFrom(reader); err != nil {
			buffers.Put(buf)
			if !signalled {
				connected.Done()
			}
			return
		}
		c.handle(buf.Bytes(), &signalled, connected)
		buffers.Put(buf)
	}
}

func (c *client) handle(frame []byte, signalled *bool, connected *sync.WaitGroup) {
	bytesIn.Add(int64(len(frame)))
	var h head
	delta := false
	if useMsgpack {
		if bytes.Contains(frame[:min(len(frame), 16)], deltaHeadMP) {
			h, _ = readHead(frame)
			delta = true
		}
	} else if bytes.HasPrefix(frame, deltaHead) {
		h.Seq, _ = parseInt(frame, seqKey)
		start := frame[:min(len(frame), 300)]
		h.Explained = bytes.Contains(start, []byte(`"conflated"`)) || bytes.Contains(start, []byte(`"diff"`))
		delta = true
	}
	if delta {
		if !h.Explained && c.seq != 0 && h.Seq != c.seq+1 {
			gaps.Add(1)
		}
		c.seq = h.Seq
		n := recordLatencies(frame, time.Now().UnixMilli())
		frames.Add(1)
		deliveries.Add(n)
		return
	}
	h, ok := readHead(frame)
	if !ok {
		return
	}
	switch h.Type {
	case "subscribed":
		c.epoch, c.seq = h.Epoch, h.Seq
		if h.Resumed || c.sub["options"].(map[string]any)["snapshot"] == false {
			if !h.Resumed && c.status == "" {
				c.status = "subscribed"
			}
			if h.Resumed {
				c.status = "resumed"
			}
			if !*signalled {
				*signalled = true
				connected.Done()
			}
		}
	case "reset":
		c.epoch, c.seq = h.Epoch, h.Seq
		c.status = "reset"
	case "snapshot":
		c.seq = h.Seq
		if h.Last && !*signalled {
			if c.status == "" {
				c.status = "subscribed"
			}
			*signalled = true
			connected.Done()
		}
	case "error":
		fmt.Fprintf(os.Stderr, "client %d: error %s\n", c.n, h.Code)
	}
}

// countClose notes a connection that ended by the server's close frame, or by the network.
func countClose(err error) {
	var closed *websocket.CloseError
	if errors.As(err, &closed) && closed.Code == 4008 {
		slowCloses.Add(1)
	}
	closes.Add(1)
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
			if i == histMax {
				return int(maxLatency.Load())
			}
			return i
		}
	}
	return int(maxLatency.Load())
}

// overShare is the share of deliveries later than ms milliseconds.
func overShare(ms int) float64 {
	var total, over int64
	for i := range hist {
		v := hist[i].Load()
		total += v
		if i > ms {
			over += v
		}
	}
	if total == 0 {
		return 0
	}
	return float64(over) / float64(total)
}

func reset() {
	deliveries.Store(0)
	frames.Store(0)
	bytesIn.Store(0)
	gaps.Store(0)
	closes.Store(0)
	slowCloses.Store(0)
	maxLatency.Store(0)
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
	codec := flag.String("codec", "json", "subprotocol: json or msgpack")
	viewports := flag.Int("viewports", 0, "0: the mixed filters (117 distinct at 10,000 clients); N: every client a phone viewport, N distinct")
	protocol := flag.String("protocol", "shfeeds", "shfeeds or centrifugo (its JSON client protocol)")
	listFilters := flag.Bool("list-filters", false, "print the distinct filters (channel fN is the N-th) and exit")
	flag.Parse()
	useMsgpack = *codec == "msgpack"
	useCentrifugo = *protocol == "centrifugo"
	rng := rand.New(rand.NewSource(2019))
	clients := make([]*client, *n)
	for i := range clients {
		sub := subscription(i, rng)
		if *viewports > 0 {
			sub = viewport(i % *viewports)
		}
		clients[i] = &client{n: i, sub: sub}
	}
	distinct := channels(clients)
	if *listFilters {
		data, _ := json.Marshal(distinct)
		fmt.Println(string(data))
		return
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
				"max_ms": maxLatency.Load(), "over_1s_share": overShare(1000),
				"gaps": gaps.Load(), "closes": closes.Load(), "slow_closes": slowCloses.Load(),
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

// dialWithRetry keeps dialling until the server accepts: a storm of thousands of connections meets a full
// listen backlog, and each client backs off a little longer after every refusal.
func dialWithRetry(dialer websocket.Dialer, url string) *websocket.Conn {
	for attempt := 0; ; attempt++ {
		conn, _, err := dialer.Dial(url, http.Header{})
		if err == nil {
			return conn
		}
		time.Sleep(time.Duration(50+rand.Intn(200*(attempt+1))) * time.Millisecond)
	}
}
