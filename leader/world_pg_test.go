package leader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// A simulated Postgres per member for the sequence tests: a data
// directory (system identifier, timeline and its history, where the WAL
// ends, standby.signal, primary_conninfo, clean shutdown, last
// checkpoint) and a server that runs or not. The servers of one world
// share a pgNet: replicas receive WAL from their upstream at the world's
// ticks, as long as Postgres would let them stream.

// walRecord is the size of the WAL a checkpoint or promotion writes.
const walRecord = 0x28

// tlEnd is one line of a timeline history file: timeline tl ended at lsn.
type tlEnd struct {
	tl  int64
	lsn int64
}

// pgData is a data directory.
type pgData struct {
	sysid    string
	timeline int64
	history  []tlEnd
	// end is where the WAL ends: written on a primary, received on a
	// replica (replayed too: the fake replays at once).
	end int64
	// standby: standby.signal; upstream: primary_conninfo (nil: none).
	standby  bool
	upstream *Upstream
	// clean: the control file says the server shut down cleanly;
	// checkpoint is the latest checkpoint's location.
	clean      bool
	checkpoint int64
	// checkpointTL is the latest checkpoint's timeline in the control
	// file: what a stopped server, or a replica with no WAL receiver,
	// reports. A replica that switched timelines while streaming keeps
	// the old one until a restartpoint, which the fake never makes (real
	// ones come every checkpoint_timeout).
	checkpointTL int64
}

func (d *pgData) copy() *pgData {
	c := *d
	c.history = slices.Clone(d.history)
	if d.upstream != nil {
		up := *d.upstream
		c.upstream = &up
	}
	return &c
}

// pgNet is the servers of one world and the WAL that flows between them.
type pgNet struct {
	mu    sync.Mutex
	pgs   map[string]*fakePG
	sysid int
	// log records each operation ("b: promote"), in order, for the world.
	log func(string)
}

func newPGNet(log func(string)) *pgNet {
	return &pgNet{pgs: map[string]*fakePG{}, sysid: 7300000000000000000, log: log}
}

// fakePG is one member's Postgres.
type fakePG struct {
	n    *pgNet
	name string

	data           *pgData
	running, alive bool
	recovery       bool
	streamingFrom  string
	finalTo        map[string]bool // replicas owed the WAL of a clean stop
	syncNames      []string
	slots          Slots
	busy           int
	hold           bool             // the WAL receiver cannot reach its upstream
	startHangs     bool             // Start waits for its context, as a server that never accepts connections
	fail           map[string]error // operations that fail while set
	calls          []string
	onBootstrap    func() // runs inside Bootstrap, unlocked (an interleaving)
	onStatus       func() // runs at the start of Status, unlocked
}

var _ Postgres = (*fakePG)(nil)

func (n *pgNet) add(name string) *fakePG {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := &fakePG{n: n, name: name, fail: map[string]error{}}
	n.pgs[name] = p
	return p
}

// op records operation what (the caller holds n.mu) and returns the
// failure the test set for it.
func (p *fakePG) op(what string, detail ...string) error {
	line := what
	if len(detail) > 0 {
		line += " " + strings.Join(detail, " ")
	}
	p.calls = append(p.calls, what)
	if p.n.log != nil {
		p.n.log(p.name + ": pg " + line)
	}
	return p.fail[what]
}

func (p *fakePG) lock() func() { p.n.mu.Lock(); return p.n.mu.Unlock }

// Status is the adapter's Status: control-file facts when stopped, and
// positions only when running.
func (p *fakePG) Status(ctx context.Context) (Local, error) {
	p.n.mu.Lock()
	hook := p.onStatus
	p.n.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err := ctx.Err(); err != nil {
		return Local{}, fmt.Errorf("fake pg: status: %w", err)
	}
	defer p.lock()()
	if p.data == nil {
		return Local{}, nil
	}
	d := p.data
	l := Local{Initialized: true, Standby: d.standby, Running: p.running, Alive: p.alive,
		Timeline: d.checkpointTL, SystemID: d.sysid, ServerVersion: 150000}
	if p.running {
		l.InRecovery = p.recovery
		l.Position = d.end
		if !p.recovery {
			l.Timeline = d.timeline
		} else {
			l.ReceiveLSN, l.ReplayLSN = d.end, d.end
			l.Streaming = p.streamingFrom != ""
			if l.Streaming {
				l.Timeline = d.timeline // the WAL receiver's received_tli
			}
		}
	}
	return l, nil
}

func (p *fakePG) Alive() bool { defer p.lock()(); return p.alive }

func (p *fakePG) Bootstrap(ctx context.Context) error {
	p.n.mu.Lock()
	hook := p.onBootstrap
	p.onBootstrap = nil
	p.n.mu.Unlock()
	if hook != nil {
		hook()
	}
	defer p.lock()()
	if err := p.op("bootstrap"); err != nil {
		return err
	}
	if p.data != nil {
		return errors.New("fake pg: initdb: data directory exists")
	}
	p.n.sysid++
	p.data = &pgData{sysid: fmt.Sprint(p.n.sysid), timeline: 1, checkpointTL: 1, end: 0x3000000}
	p.running, p.alive, p.recovery = true, true, false
	return nil
}

func (p *fakePG) Start(ctx context.Context) error {
	p.n.mu.Lock()
	if err := p.op("start"); err != nil {
		p.n.mu.Unlock()
		return err
	}
	if p.startHangs {
		p.n.mu.Unlock()
		<-ctx.Done()
		return fmt.Errorf("fake pg: start: not accepting connections: %w", ctx.Err())
	}
	defer p.n.mu.Unlock()
	if p.data == nil {
		return errors.New("fake pg: start: no data directory")
	}
	if !p.running {
		p.running, p.alive, p.recovery = true, true, p.data.standby
		p.data.clean = false
	}
	return nil
}

// stop is a shutdown: a fast one of a primary writes the shutdown
// checkpoint, which the replicas streaming from it still receive (at
// the next tick); an immediate one leaves the control file unclean.
func (p *fakePG) stop(immediate bool) {
	if !p.running && !p.alive {
		return
	}
	if !immediate && p.running {
		if !p.recovery {
			p.data.checkpoint, p.data.checkpointTL = p.data.end, p.data.timeline
			p.data.end += walRecord
			p.finalTo = map[string]bool{}
			for _, q := range p.n.pgs {
				if q.streamingFrom == p.name {
					p.finalTo[q.name] = true
				}
			}
		} else {
			p.data.checkpoint = p.data.end
		}
		p.data.clean = true
	}
	p.running, p.alive, p.recovery, p.streamingFrom = false, false, false, ""
}

func (p *fakePG) Stop(ctx context.Context, immediate bool) error {
	defer p.lock()()
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	if err := p.op("stop", mode); err != nil {
		return err
	}
	p.stop(immediate)
	return nil
}

func (p *fakePG) Promote(ctx context.Context) error {
	defer p.lock()()
	if err := p.op("promote"); err != nil {
		return err
	}
	if !p.running {
		return errors.New("fake pg: promote: not running")
	}
	if !p.recovery {
		return nil
	}
	d := p.data
	d.history = append(d.history, tlEnd{d.timeline, d.end})
	d.timeline++
	d.checkpointTL = d.timeline // the end-of-recovery checkpoint
	d.end += walRecord          // end-of-recovery record on the new timeline
	d.standby, p.recovery, p.streamingFrom = false, false, ""
	return nil
}

func (p *fakePG) FinishPromote(ctx context.Context) error {
	defer p.lock()()
	if err := p.op("finish_promote"); err != nil {
		return err
	}
	p.checkpoint()
	p.data.upstream = nil
	return nil
}

func (p *fakePG) checkpoint() {
	if p.running && !p.recovery {
		p.data.checkpoint = p.data.end
		p.data.end += walRecord
	}
}

func (p *fakePG) SwitchPoint(ctx context.Context) (int64, int64, error) {
	defer p.lock()()
	if !p.running || len(p.data.history) == 0 {
		return 0, 0, errors.New("fake pg: no timeline history file")
	}
	h := p.data.history[len(p.data.history)-1]
	return h.tl, h.lsn, nil
}

func (p *fakePG) StoppedAt(ctx context.Context) (int64, error) {
	defer p.lock()()
	if p.data == nil {
		return 0, errors.New("fake pg: pg_controldata: no data directory")
	}
	return p.data.checkpoint, nil
}

func (p *fakePG) Checkpoint(ctx context.Context) error {
	defer p.lock()()
	if err := p.op("checkpoint"); err != nil {
		return err
	}
	if !p.running {
		return errors.New("fake pg: checkpoint: not running")
	}
	p.checkpoint()
	return nil
}

func (p *fakePG) Demote(ctx context.Context, up *Upstream) error {
	defer p.lock()()
	target := "(none)"
	if up != nil {
		target = up.Name
	}
	if err := p.op("demote", target); err != nil {
		return err
	}
	if p.data == nil {
		return errors.New("fake pg: demote: no data directory")
	}
	p.stop(false)
	p.syncNames = nil
	p.data.standby, p.data.upstream = true, nil
	if up != nil && up.Host != "" {
		u := *up
		p.data.upstream = &u
	}
	p.running, p.alive, p.recovery, p.data.clean = true, true, true, false
	return nil
}

func (p *fakePG) Follow(ctx context.Context, up Upstream) error {
	defer p.lock()()
	if err := p.op("follow", up.Name); err != nil {
		return err
	}
	if p.data == nil || !p.data.standby {
		return errors.New("fake pg: follow: not a replica (no standby.signal)")
	}
	if p.data.upstream == nil || p.data.upstream.Name != up.Name {
		p.streamingFrom = "" // the WAL receiver restarts
	}
	p.data.upstream = nil
	if up.Host != "" {
		p.data.upstream = &up
	}
	return nil
}

func (p *fakePG) Clone(ctx context.Context, up Upstream) error {
	defer p.lock()()
	if err := p.op("clone", up.Name); err != nil {
		return err
	}
	if p.data != nil {
		return errors.New("fake pg: clone: data directory exists")
	}
	src := p.n.pgs[up.Name]
	if src == nil || !src.running {
		return fmt.Errorf("fake pg: pg_basebackup: could not connect to %s", up.Name)
	}
	d := src.data.copy()
	d.standby, d.upstream, d.clean, d.checkpoint, d.checkpointTL = true, &up, false, d.end, d.timeline
	p.data = d
	return nil
}

func (p *fakePG) Rewind(ctx context.Context, up Upstream) error {
	defer p.lock()()
	if p.data == nil {
		return errors.New("fake pg: rewind: no data directory")
	}
	p.stop(false)
	if err := p.op("rewind", up.Name); err != nil {
		return err
	}
	src := p.n.pgs[up.Name]
	if src == nil || !src.running {
		return fmt.Errorf("fake pg: pg_rewind: could not connect to %s", up.Name)
	}
	if src.data.sysid != p.data.sysid {
		return errors.New("fake pg: pg_rewind: source and target clusters are from different systems")
	}
	if !canStream(p.data, src.data) {
		fork := forkPoint(p.data, src.data)
		p.data.timeline, p.data.history = src.data.timeline, slices.Clone(src.data.history)
		p.data.end = min(p.data.end, fork)
	}
	p.data.checkpointTL = p.data.timeline
	u := up
	p.data.standby, p.data.upstream = true, &u
	return nil
}

func (p *fakePG) CheckSource(ctx context.Context, up Upstream) error {
	defer p.lock()()
	if err := p.op("check_source", up.Name); err != nil {
		return err
	}
	if src := p.n.pgs[up.Name]; src == nil || !src.running {
		return fmt.Errorf("fake pg: could not connect to %s", up.Name)
	}
	return nil
}

func (p *fakePG) Wipe(ctx context.Context) error {
	defer p.lock()()
	if err := p.op("wipe"); err != nil {
		return err
	}
	if p.running || p.alive {
		return errors.New("fake pg: refuse to wipe a running server")
	}
	p.data = nil
	return nil
}

func (p *fakePG) SyncSlots(ctx context.Context, want Slots) error {
	defer p.lock()()
	if !p.running {
		return errors.New("fake pg: slots: not running")
	}
	p.slots = want
	return nil
}

func (p *fakePG) SetSyncStandby(ctx context.Context, members []string) error {
	defer p.lock()()
	if err := p.op("set_sync", fmt.Sprint(members)); err != nil {
		return err
	}
	p.syncNames = slices.Clone(members)
	return nil
}

// Streaming is pg_stat_replication: the replicas streaming from here,
// sync when synchronous_standby_names names them (FIRST N over all of
// them; '*' makes the first one by name sync, the others potential).
func (p *fakePG) Streaming(ctx context.Context) (map[string]string, error) {
	defer p.lock()()
	if !p.running {
		return nil, errors.New("fake pg: streaming: not running")
	}
	out := map[string]string{}
	var names []string
	for _, q := range p.n.pgs {
		if q.streamingFrom == p.name {
			names = append(names, q.name)
		}
	}
	sort.Strings(names)
	for i, name := range names {
		switch {
		case slices.Equal(p.syncNames, []string{"*"}) && i == 0:
			out[name] = "sync"
		case slices.Equal(p.syncNames, []string{"*"}):
			out[name] = "potential"
		case slices.Contains(p.syncNames, name):
			out[name] = "sync"
		default:
			out[name] = "async"
		}
	}
	return out, nil
}

func (p *fakePG) Busy(ctx context.Context) (int, error) {
	defer p.lock()()
	if !p.running {
		return 0, errors.New("fake pg: busy: not running")
	}
	return p.busy, nil
}

// canStream reports whether Postgres lets a replica with data r stream
// from a server with data u: same system; r's timeline is u's or one u's
// history passes through (with the same earlier switches), and r's WAL
// does not go past the point where u's lineage left r's timeline.
func canStream(r, u *pgData) bool {
	if r.sysid != u.sysid || r.timeline > u.timeline || len(r.history) > len(u.history) ||
		(r.timeline < u.timeline && len(r.history) == len(u.history)) {
		return false
	}
	for i, h := range r.history {
		if u.history[i] != h {
			return false
		}
	}
	if r.timeline == u.timeline {
		return r.end <= u.end
	}
	return r.end <= u.history[len(r.history)].lsn && u.history[len(r.history)].tl == r.timeline
}

// forkPoint is where the WAL of r and u parted: the end of the first
// timeline on which their lineages differ, whichever is earlier.
func forkPoint(r, u *pgData) int64 {
	lineage := func(d *pgData) []tlEnd {
		return append(slices.Clone(d.history), tlEnd{d.timeline, 1 << 62})
	}
	lr, lu := lineage(r), lineage(u)
	for i := 0; i < min(len(lr), len(lu)); i++ {
		if lr[i] != lu[i] {
			return min(lr[i].lsn, lu[i].lsn)
		}
	}
	return min(r.end, u.end)
}

// replicate moves WAL: every running replica whose WAL receiver reaches
// its upstream, and that Postgres lets stream from it, switches to the
// upstream's timeline and receives all of its WAL; a replica that
// streamed from a server stopped cleanly receives its shutdown
// checkpoint. Repeated until nothing changes (cascades).
func (n *pgNet) replicate() {
	n.mu.Lock()
	defer n.mu.Unlock()
	names := make([]string, 0, len(n.pgs))
	for name := range n.pgs {
		names = append(names, name)
	}
	sort.Strings(names)
	for range len(names) + 1 {
		changed := false
		for _, name := range names {
			if n.pgs[name].receive() {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
}

func (p *fakePG) receive() bool {
	if !p.running || !p.recovery || p.data.upstream == nil {
		return false
	}
	u := p.n.pgs[p.data.upstream.Name]
	ok := u != nil && !p.hold && u.data != nil && (u.running || u.finalTo[p.name]) && canStream(p.data, u.data)
	if !ok {
		was := p.streamingFrom
		p.streamingFrom = ""
		return was != ""
	}
	changed := false
	if p.data.timeline != u.data.timeline {
		p.data.timeline, p.data.history = u.data.timeline, slices.Clone(u.data.history)
		changed = true
	}
	if u.data.end > p.data.end {
		p.data.end = u.data.end
		changed = true
	}
	was := p.streamingFrom
	p.streamingFrom = u.name
	if !u.running {
		delete(u.finalTo, p.name)
		p.streamingFrom = ""
	}
	return changed || was != p.streamingFrom
}

// write is a client's write on the server: WAL on a running primary.
func (p *fakePG) write(bytes int64) error {
	defer p.lock()()
	if !p.running || p.recovery {
		return fmt.Errorf("fake pg %s: cannot execute a write in a read-only transaction (or not running)", p.name)
	}
	p.data.end += bytes
	return nil
}

// crash is kill -9 of the postmaster.
func (p *fakePG) crash() {
	defer p.lock()()
	p.n.log(p.name + ": pg crashed")
	p.running, p.alive, p.recovery, p.streamingFrom = false, false, false, ""
	if p.data != nil {
		p.data.clean = false
	}
}

// pgState is what the tests assert about a server.
type pgState struct {
	Initialized, Running, Writable bool
	Timeline                       int64
	End                            int64
	StreamsFrom, Upstream          string
	SysID                          string
}

func (p *fakePG) state() pgState {
	defer p.lock()()
	s := pgState{Initialized: p.data != nil, Running: p.running, Writable: p.running && !p.recovery, StreamsFrom: p.streamingFrom}
	if p.data != nil {
		s.Timeline, s.End, s.SysID = p.data.timeline, p.data.end, p.data.sysid
		if p.data.upstream != nil {
			s.Upstream = p.data.upstream.Name
		}
	}
	return s
}

// called reports how many times operation what ran.
func (p *fakePG) called(what string) int {
	defer p.lock()()
	n := 0
	for _, c := range p.calls {
		if c == what {
			n++
		}
	}
	return n
}

// set changes the server under the lock (test knobs).
func (p *fakePG) set(f func(p *fakePG)) { defer p.lock()(); f(p) }
