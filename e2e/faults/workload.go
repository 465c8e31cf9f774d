package faults

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
)

// Ack is one acknowledged write of the workload: the INSERT's commit
// returned OK to the client.
type Ack struct {
	ID     int64     `json:"id"`
	Client string    `json:"client"`
	Sent   time.Time `json:"sent"`
	At     time.Time `json:"at"`
	Server string    `json:"server"` // the backend's address (which node took it)
	TL     int64     `json:"timeline"`
	LSN    uint64    `json:"lsn"` // insert position when the row was written
}

// Sample is one attempt of the sampler to write directly on a node's
// Postgres. OK means the commit returned OK; the write then took effect
// at some instant between Start and End.
type Sample struct {
	Node  string
	Start time.Time
	End   time.Time
	OK    bool
	TL    int64 // the node's insert timeline, when OK
}

// ClientStats counts one workload client's attempts.
type ClientStats struct {
	Attempts int64 `json:"attempts"`
	Acked    int64 `json:"acked"`
	Failed   int64 `json:"failed"` // errors, including unknown outcomes
}

// Workload is the writers, the sampler, and a watch on the leader key.
type Workload struct {
	c *Cluster

	// WriteEvery paces each writer; SampleEvery the sampler of each node.
	WriteEvery, SampleEvery time.Duration

	nextID atomic.Int64

	mu      sync.Mutex
	acks    []Ack
	samples []Sample
	keys    []KeyEvent
	stats   map[string]*ClientStats
}

// poolerClient names the writer going through node's pooler.
func poolerClient(node string) string { return "pooler-" + node }

// multiHostClient names the writer using a multi-host DSN.
const multiHostClient = "multihost"

// NewWorkload prepares writers through every node's pooler and one
// through a multi-host DSN (target_session_attrs=read-write), and a
// sampler for every node.
func NewWorkload(c *Cluster) *Workload {
	return &Workload{c: c, WriteEvery: 20 * time.Millisecond, SampleEvery: 100 * time.Millisecond, stats: map[string]*ClientStats{}}
}

// Run runs every writer and sampler until ctx ends.
func (w *Workload) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	var hosts []string
	for _, n := range w.c.Nodes {
		dsn := n.PoolerDSN()
		name := poolerClient(n.Name)
		g.Go(func() error { w.writer(gctx, name, dsn); return nil })
		hosts = append(hosts, n.Host.IP+":"+strconv.Itoa(pgPort))
		node := n
		g.Go(func() error { w.sampler(gctx, node); return nil })
	}
	multi := "postgres://" + superUser + ":" + superPass + "@" + strings.Join(hosts, ",") +
		"/postgres?sslmode=disable&connect_timeout=2&target_session_attrs=read-write"
	g.Go(func() error { w.writer(gctx, multiHostClient, multi); return nil })
	g.Go(func() error { w.watchLeaderKey(gctx); return nil })
	return g.Wait()
}

func (w *Workload) stat(client string) *ClientStats {
	s, ok := w.stats[client]
	if !ok {
		s = &ClientStats{}
		w.stats[client] = s
	}
	return s
}

// writer inserts rows with unique ids, one per transaction, on one
// connection (reconnecting after any error), and records each ack. A
// write is bounded by 5 s; running out of it is an unknown outcome (the
// connection is closed; no cancel request reaches the server, so a commit
// waiting for a synchronous standby is never turned into an ack).
func (w *Workload) writer(ctx context.Context, client, dsn string) {
	tick := time.NewTicker(w.WriteEvery)
	defer tick.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			cfg, err := connConfig(w.c.Client, dsn)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			conn, err = pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				conn = nil
				w.count(client, false)
				continue
			}
		}
		id := w.nextID.Add(1)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a := Ack{ID: id, Client: client, Sent: time.Now()}
		var wal, lsn string
		err := conn.QueryRow(wctx, `INSERT INTO acked (id, client) VALUES ($1, $2)
			RETURNING coalesce(inet_server_addr()::text, ''), pg_walfile_name(pg_current_wal_insert_lsn()), pg_current_wal_insert_lsn()::text`,
			id, client).Scan(&a.Server, &wal, &lsn)
		a.At = time.Now()
		cancel()
		if err != nil {
			if !serverError(err) {
				conn.Close(context.Background())
				conn = nil
			}
			w.count(client, false)
			continue
		}
		a.Server, _, _ = strings.Cut(a.Server, "/")
		a.TL = walTimeline(wal)
		a.LSN, _ = parseLSN(lsn)
		w.mu.Lock()
		w.acks = append(w.acks, a)
		w.stat(client).Attempts++
		w.stat(client).Acked++
		w.mu.Unlock()
	}
}

func (w *Workload) count(client string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stat(client)
	s.Attempts++
	if !ok {
		s.Failed++
	}
}

// sampler tries a tiny write directly on the node's Postgres every
// SampleEvery, bounded by 1 s (connect included), and records the outcome.
func (w *Workload) sampler(ctx context.Context, n *Node) {
	tick := time.NewTicker(w.SampleEvery)
	defer tick.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	cfg, err := connConfig(w.c.Client, n.DSN())
	if err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		s := Sample{Node: n.Name, Start: time.Now()}
		if conn == nil {
			if conn, err = pgx.ConnectConfig(sctx, cfg); err != nil {
				conn = nil
			}
		}
		if conn != nil {
			s.Start = time.Now() // the write cannot take effect before it is sent
			var wal string
			err = conn.QueryRow(sctx, "INSERT INTO probe (node) VALUES ($1) RETURNING pg_walfile_name(pg_current_wal_insert_lsn())", n.Name).Scan(&wal)
			s.End = time.Now()
			if err == nil {
				s.OK, s.TL = true, walTimeline(wal)
			} else if !serverError(err) {
				conn.Close(context.Background())
				conn = nil
			}
		} else {
			s.End = time.Now()
		}
		cancel()
		if ctx.Err() != nil {
			return // the run ended mid-sample: not an observation
		}
		w.mu.Lock()
		w.samples = append(w.samples, s)
		w.mu.Unlock()
	}
}

// serverError reports whether err is an error the server sent on a
// connection that is still good (read-only transaction, ...), as opposed
// to a broken or timed-out connection.
func serverError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Severity != "FATAL" && pe.Severity != "PANIC"
}

// walTimeline reads the timeline from a WAL file name (its first 8 hex
// digits); 0 when it cannot.
func walTimeline(wal string) int64 {
	if len(wal) < 8 {
		return 0
	}
	tl, err := strconv.ParseInt(wal[:8], 16, 64)
	if err != nil {
		return 0
	}
	return tl
}

// Recorded is what the workload saw.
type Recorded struct {
	Acks    []Ack
	Samples []Sample
	Keys    []KeyEvent
	Stats   map[string]ClientStats
}

// Snapshot copies what was recorded so far.
func (w *Workload) Snapshot() Recorded {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := make(map[string]ClientStats, len(w.stats))
	for k, v := range w.stats {
		st[k] = *v
	}
	return Recorded{Acks: append([]Ack(nil), w.acks...), Samples: append([]Sample(nil), w.samples...),
		Keys: append([]KeyEvent(nil), w.keys...), Stats: st}
}

// AckedSince reports whether every pooler client had an ack after t.
func (w *Workload) AckedSince(t time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := map[string]time.Time{}
	for i := len(w.acks) - 1; i >= 0 && w.acks[i].At.After(t); i-- {
		if _, ok := last[w.acks[i].Client]; !ok {
			last[w.acks[i].Client] = w.acks[i].At
		}
	}
	for _, n := range w.c.Nodes {
		if _, ok := last[poolerClient(n.Name)]; !ok {
			return "no ack yet through " + poolerClient(n.Name)
		}
	}
	return ""
}
