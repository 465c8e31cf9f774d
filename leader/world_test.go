package leader

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// A world is a cluster of members whose HA loops run on in-memory etcd
// (fakeEtcd), leases (fakeLease) and Postgres (fakePG) and a virtual
// clock. A test drives it one cycle at a time, in an order it chooses,
// and asserts what each member decided and what the cluster became.
// Nothing waits on real time and nothing is started but one loopback
// HTTP server per member (its REST API, which peers probe).

// vclock is the world's time: it moves only when the test (or a loop's
// sleep) moves it.
type vclock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *vclock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *vclock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sleep is the loop's sleep on the virtual clock: it returns at once,
// the clock moved on by d.
func (c *vclock) sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	c.advance(d)
	return true
}

const worldScope = "seq"

type world struct {
	t       *testing.T
	clock   *vclock
	etcd    *fakeEtcd
	net     *pgNet
	cfg     config.DynamicConfig
	members map[string]*node
	names   []string
	// splitBrainOK turns off the check that at most one server is a
	// writable primary after each cycle (a test that makes one on
	// purpose).
	splitBrainOK bool

	mu     sync.Mutex
	events []string
}

// node is one member: its Postgres and REST API, which outlive the
// daemon, and the daemon (loop, store, lease) while it runs.
type node struct {
	name    string
	pg      *fakePG
	api     *httptest.Server
	apiDown atomic.Bool
	tags    config.Tags
	fence   *fakeFence
	fenced  atomic.Int32 // OnFence calls

	loop  *Loop
	store *fakeStore
	lease *fakeLease
	logs  *logRecorder
}

// newWorld makes members names (not started), with edit applied to the
// bootstrap dynamic config (nil: the defaults).
func newWorld(t *testing.T, edit func(*config.DynamicConfig), names ...string) *world {
	t.Helper()
	clock := &vclock{t: time.Now().Truncate(time.Second)}
	w := &world{t: t, clock: clock, etcd: newFakeEtcd(clock.Now), cfg: config.DefaultDynamic(), members: map[string]*node{}}
	if edit != nil {
		edit(&w.cfg)
	}
	w.net = newPGNet(w.event)
	w.etcd.onWrite = func(key string, ev *clientv3.Event) {
		k := strings.TrimPrefix(key, Prefix("/service/", worldScope))
		if strings.HasPrefix(k, keyMembers) || k == keyStatus {
			return
		}
		if ev.Type == clientv3.EventTypeDelete {
			w.event("etcd: delete " + k)
		} else {
			w.event(fmt.Sprintf("etcd: put %s = %s", k, ev.Kv.Value))
		}
	}
	for _, name := range names {
		m := &node{name: name, pg: w.net.add(name), logs: &logRecorder{}}
		m.fence = &fakeFence{w: w, name: name}
		m.api = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w.serveAPI(m, rw) }))
		w.members[name] = m
		w.names = append(w.names, name)
	}
	t.Cleanup(func() {
		for _, m := range w.members {
			m.api.Close()
		}
		if t.Failed() || os.Getenv("PGHA_WORLD_EVENTS") != "" {
			t.Logf("world events:\n%s", strings.Join(w.eventLog(), "\n"))
		}
	})
	return w
}

func (w *world) event(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, s)
}

func (w *world) eventLog() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// eventIndex is the position of the first event containing s after
// index from, -1 when there is none.
func (w *world) eventIndex(s string, from int) int {
	ev := w.eventLog()
	for i := max(from, 0); i < len(ev); i++ {
		if strings.Contains(ev[i], s) {
			return i
		}
	}
	return -1
}

func (w *world) m(name string) *node {
	m, ok := w.members[name]
	if !ok {
		w.t.Fatalf("world: no member %q", name)
	}
	return m
}

// serveAPI answers GET /patroni from the member's Postgres, as the
// daemon's REST API does; a dead daemon or a cut API answers nothing
// useful, so peers fall back to the member key.
func (w *world) serveAPI(m *node, rw http.ResponseWriter) {
	if m.apiDown.Load() || m.loop == nil {
		http.Error(rw, "unreachable", http.StatusServiceUnavailable)
		return
	}
	s := m.pg.state()
	var d peerDoc
	d.State, d.Role = string(cluster.StateStopped), string(cluster.RoleReplica)
	if s.Running {
		d.State = string(cluster.StateRunning)
	}
	if s.Writable {
		d.Role = string(cluster.RolePrimary)
		d.XLog.Location = s.End
	} else if s.Running {
		d.XLog.ReceivedLocation, d.XLog.ReplayedLocation = s.End, s.End
	}
	_ = json.NewEncoder(rw).Encode(d)
}

// start starts name's daemon: a new store, a new lease (granted), a new
// loop on the virtual clock, and what Loop.run does before its first
// cycle (publish the member key, seed the config).
func (w *world) start(name string) {
	w.t.Helper()
	m := w.m(name)
	m.store = newFakeStore(w.etcd, worldScope, name)
	m.lease = newFakeLease(w.etcd, m.store, w.cfg.TTL.D())
	m.logs = &logRecorder{}
	opt := Options{
		Name: name, Tags: m.tags, Version: "test",
		ConnURL:   "postgres://" + name + ":5432/postgres",
		APIURL:    m.api.URL + "/patroni",
		Bootstrap: w.cfg,
		OnFence: func() {
			m.fenced.Add(1)
			w.event(name + ": pooler paused (OnFence)")
		},
		Fence: m.fence,
		Log:   slog.New(recHandler{r: m.logs}),
	}
	l := newLoop(m.store, m.lease, m.pg, opt)
	l.now, l.sleep = w.clock.Now, w.clock.sleep
	m.lease.onGrant = l.republishMember
	m.loop = l
	w.event(name + ": daemon started")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if local, err := m.pg.Status(ctx); err == nil {
		l.noteRole(local, false, "daemon started")
		l.publishMember(ctx, local)
	}
	if _, err := m.store.SeedConfig(ctx, w.cfg); err != nil {
		w.t.Fatalf("world: seed config: %v", err)
	}
}

// startAll starts every member's daemon.
func (w *world) startAll() {
	for _, n := range w.names {
		w.start(n)
	}
}

// kill is kill -9 of name's daemon: no handover, no revoke; its lease
// expires ttl after its last keepalive. Postgres is left as it is.
func (w *world) kill(name string) {
	m := w.m(name)
	m.loop, m.store, m.lease = nil, nil, nil
	w.event(name + ": daemon killed")
}

// tick is what happens between two cycles in the background: every
// running daemon's lease sends a keepalive, and WAL flows to replicas.
func (w *world) tick() {
	for _, n := range w.names {
		if m := w.members[n]; m.loop != nil {
			m.lease.keepalive()
		}
	}
	w.net.replicate()
}

// advance moves the clock on by d, in steps of at most a second: at
// each step every running daemon's lease sends its keepalive (Lease.Run
// does every ttl/3) and etcd expires the leases whose ttl ran out. A
// member whose daemon runs must not have a writable Postgres once its
// lease expired (DESIGN rule 1: the loop fences before).
func (w *world) advance(d time.Duration) {
	w.t.Helper()
	for d > 0 {
		step := min(d, time.Second)
		d -= step
		w.clock.advance(step)
		for _, n := range w.names {
			if m := w.members[n]; m.loop != nil {
				m.lease.keepalive()
			}
		}
		for _, id := range w.etcd.expire() {
			w.event(fmt.Sprintf("etcd: lease %d expired", id))
			for _, n := range w.names {
				m := w.members[n]
				if m.loop != nil && m.lease.State().ID == id && m.pg.state().Writable {
					w.t.Errorf("%s: its lease expired while its Postgres is a writable primary", n)
				}
			}
		}
	}
}

// turn is one cycle of one member: what it decided and, when carrying
// it out failed, the error.
type turn struct {
	Action
	Err string
}

func (tn turn) String() string {
	s := fmt.Sprintf("%s %q (%s)", tn.Kind, tn.Target, tn.Why)
	if tn.Err != "" {
		s += " failed: " + tn.Err
	}
	return s
}

// cycle runs one cycle of name's loop and returns its decision.
func (w *world) cycle(name string) turn {
	w.t.Helper()
	m := w.m(name)
	if m.loop == nil {
		w.t.Fatalf("world: %s's daemon is not running", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := m.logs.len()
	m.loop.cycle(ctx, false)
	var tn turn
	for _, r := range m.logs.since(from) {
		switch r.msg {
		case "ha decision":
			tn.Action = Action{Kind: Kind(r.attrs["action"]), Target: r.attrs["target"], Why: r.attrs["why"]}
		case "ha action failed":
			tn.Err = r.attrs["err"]
		}
	}
	if tn.Kind == "" {
		w.t.Fatalf("world: %s's cycle logged no decision", name)
	}
	w.event(fmt.Sprintf("%s: decided %s", name, tn))
	w.checkOneWriter()
	return tn
}

// round ticks and cycles each named member once (all running ones in
// name order when none are named).
func (w *world) round(names ...string) map[string]turn {
	w.t.Helper()
	if len(names) == 0 {
		for _, n := range w.names {
			if w.members[n].loop != nil {
				names = append(names, n)
			}
		}
	}
	out := map[string]turn{}
	for _, n := range names {
		w.tick()
		out[n] = w.cycle(n)
	}
	return out
}

// settle runs rounds (at most 10) until cond reports nothing missing.
func (w *world) settle(what string, cond func() string) {
	w.t.Helper()
	missing := cond()
	for i := 0; i < 10 && missing != ""; i++ {
		w.round()
		missing = cond()
	}
	if missing != "" {
		w.t.Fatalf("world: %s: not reached after 10 rounds: %s", what, missing)
	}
}

func (w *world) checkOneWriter() {
	w.t.Helper()
	if w.splitBrainOK {
		return
	}
	var writable []string
	for _, n := range w.names {
		if w.members[n].pg.state().Writable {
			writable = append(writable, n)
		}
	}
	if len(writable) > 1 {
		w.t.Errorf("two writable primaries: %v", writable)
	}
}

// view reads the cluster's keys as pghactl does.
func (w *world) view() cluster.View {
	prefix := Prefix("/service/", worldScope)
	kvs, rev := w.etcd.rangePrefix(prefix)
	v, _, _ := parseView(worldScope, prefix, rev, kvs, nil)
	return v
}

// healthy reports what keeps the cluster from being healthy with leader
// lead on timeline tl: lead runs as primary and holds the key, every
// other member with a running daemon streams from it on tl, and member
// keys say so. "" when healthy.
func (w *world) healthy(lead string, tl int64) string {
	v := w.view()
	if v.Leader != lead {
		return fmt.Sprintf("leader key names %q, want %s", v.Leader, lead)
	}
	for _, n := range w.names {
		m := w.members[n]
		if m.loop == nil {
			continue
		}
		s := m.pg.state()
		mk, ok := v.Member(n)
		switch {
		case !ok:
			return n + " has no member key"
		case s.Timeline != tl:
			return fmt.Sprintf("%s is on timeline %d, want %d", n, s.Timeline, tl)
		case n == lead && (!s.Writable || mk.Role != cluster.RolePrimary || mk.State != cluster.StateRunning):
			return fmt.Sprintf("leader %s: postgres %+v, member key %s/%s", n, s, mk.Role, mk.State)
		case n != lead && (s.StreamsFrom != lead || mk.Role != cluster.RoleReplica || mk.State != cluster.StateStreaming):
			return fmt.Sprintf("%s streams from %q (member key %s/%s), want %s", n, s.StreamsFrom, mk.Role, mk.State, lead)
		}
	}
	return ""
}

// requestFailover writes the failover key as pghactl does.
func (w *world) requestFailover(f cluster.Failover) {
	w.t.Helper()
	b, _ := json.Marshal(f)
	if err := w.etcd.put(Prefix("/service/", worldScope)+keyFailover, string(b)); err != nil {
		w.t.Fatal(err)
	}
}

// editConfig changes the dynamic config as pghactl edit-config does (a
// compare-and-swap on the key's revision).
func (w *world) editConfig(edit func(*config.DynamicConfig)) {
	w.t.Helper()
	k := Prefix("/service/", worldScope) + keyConfig
	kv := w.etcd.get(k)
	if kv == nil {
		w.t.Fatal("world: no config key yet")
	}
	c, err := config.ParseDynamic(kv.Value)
	if err != nil {
		w.t.Fatal(err)
	}
	edit(&c)
	if err := c.Validate(); err != nil {
		w.t.Fatalf("world: edited config: %v", err)
	}
	b, err := config.EncodeDynamic(kv.Value, c)
	if err != nil {
		w.t.Fatal(err)
	}
	if ok, err := w.etcd.txn([]fcmp{modIs(k, kv.ModRevision)}, []fop{putOp(k, string(b), 0)}); !ok || err != nil {
		w.t.Fatalf("world: edit config: ok=%v err=%v", ok, err)
	}
}

// bootstrap starts every member and runs rounds until the first one
// leads on timeline 1 and the others stream from it.
func (w *world) bootstrap() {
	w.t.Helper()
	w.startAll()
	lead := w.names[0]
	w.settle("bootstrapped cluster", func() string { return w.healthy(lead, 1) })
}

// fakeFence is a WriteFence that records each permission and checks
// that it is given before its deadline, and never beyond the lease's
// ttl minus the margin.
type fakeFence struct {
	w    *world
	name string

	mu     sync.Mutex
	allows []allowCall
	refuse error
}

type allowCall struct {
	at, until, acked time.Time
	ttl              time.Duration
}

func (f *fakeFence) Allow(until, acked time.Time, ttl time.Duration) error {
	now := f.w.clock.Now()
	f.mu.Lock()
	f.allows = append(f.allows, allowCall{at: now, until: until, acked: acked, ttl: ttl})
	refuse := f.refuse
	f.mu.Unlock()
	f.w.event(fmt.Sprintf("%s: fence allows writes for %s", f.name, until.Sub(now)))
	if !now.Before(until) {
		f.w.t.Errorf("%s: write permission given at %s, not before its deadline %s", f.name, now, until)
	}
	if limit := acked.Add(ttl - margin(ttl)); until.After(limit) {
		f.w.t.Errorf("%s: write permission until %s, beyond acked+ttl-margin %s", f.name, until, limit)
	}
	return refuse
}

func (f *fakeFence) calls() []allowCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.allows)
}

// logRecorder keeps a loop's log records (every level).
type logRecorder struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *logRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

func (r *logRecorder) since(i int) []logRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs[i:])
}

// count is how many records have message msg.
func (r *logRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.msg == msg {
			n++
		}
	}
	return n
}

type recHandler struct {
	r     *logRecorder
	attrs []slog.Attr
}

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recHandler) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	h.r.mu.Lock()
	h.r.recs = append(h.r.recs, logRec{level: rec.Level, msg: rec.Message, attrs: m})
	h.r.mu.Unlock()
	return nil
}

func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{r: h.r, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h recHandler) WithGroup(string) slog.Handler { return h }
