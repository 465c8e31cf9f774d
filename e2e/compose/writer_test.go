package compose

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// writer inserts (via, id) rows one at a time, ids 1, 2, 3, ..., over one
// connection that it opens again after any error. It remembers when each
// insert was acknowledged and every error, so that gaps and losses can be
// measured. A failed insert's id is never reused: its outcome is unknown.
type writer struct {
	name string // the via column, and how the writer is named in reports
	dsn  string

	mu   sync.Mutex
	acks []ack
	errs []writeErr
}

type ack struct {
	id int64
	at time.Time
}

type writeErr struct {
	at  time.Time
	msg string
}

// Bounds of a writer: one insert at a time, paced at about 50 per second,
// each bounded in time, the whole run bounded in count.
const (
	writePause      = 20 * time.Millisecond
	statementBound  = 30 * time.Second
	connectBound    = 2 * time.Second
	maxWritesPerRun = 100_000
)

func newWriter(name, hostPort, password string) *writer {
	return &writer{
		name: name,
		dsn:  fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable&connect_timeout=%d", password, hostPort, int(connectBound/time.Second)),
	}
}

// run writes until ctx ends or maxWritesPerRun ids were tried.
func (w *writer) run(ctx context.Context) {
	var c *pgx.Conn
	defer func() {
		if c != nil {
			c.Close(context.Background())
		}
	}()
	for id := int64(1); id <= maxWritesPerRun; {
		if ctx.Err() != nil {
			return
		}
		if c == nil {
			cctx, cancel := context.WithTimeout(ctx, connectBound)
			conn, err := pgx.Connect(cctx, w.dsn)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.fail("connect: " + err.Error())
				pause(ctx, 100*time.Millisecond)
				continue
			}
			c = conn
		}
		sctx, cancel := context.WithTimeout(ctx, statementBound)
		_, err := c.Exec(sctx, "INSERT INTO compose_writes (via, id) VALUES ($1, $2)", w.name, id)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.fail(fmt.Sprintf("insert %d: %v", id, err))
			c.Close(context.Background())
			c = nil
		} else {
			w.mu.Lock()
			w.acks = append(w.acks, ack{id: id, at: time.Now()})
			w.mu.Unlock()
		}
		id++
		pause(ctx, writePause)
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (w *writer) fail(msg string) {
	w.mu.Lock()
	w.errs = append(w.errs, writeErr{at: time.Now(), msg: msg})
	w.mu.Unlock()
}

// ackedSince counts the acknowledgements after t.
func (w *writer) ackedSince(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.acks), func(i int) bool { return w.acks[i].at.After(t) })
	return len(w.acks) - i
}

// ackedIDs is every id acknowledged so far.
func (w *writer) ackedIDs() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int64, len(w.acks))
	for i, a := range w.acks {
		ids[i] = a.id
	}
	return ids
}

// errorsBetween lists the errors in [from, to].
func (w *writer) errorsBetween(from, to time.Time) []writeErr {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []writeErr
	for _, e := range w.errs {
		if !e.at.Before(from) && !e.at.After(to) {
			out = append(out, e)
		}
	}
	return out
}

// longestGap is the longest time without an acknowledgement between the
// last one before from and the first one after to (or to itself, when
// none came after): the writer's longest outage around an event.
func (w *writer) longestGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.acks), func(i int) bool { return !w.acks[i].at.Before(from) })
	prev := from
	if i > 0 {
		prev = w.acks[i-1].at
	}
	var longest time.Duration
	for ; i < len(w.acks); i++ {
		at := w.acks[i].at
		if gap := at.Sub(prev); gap > longest {
			longest = gap
		}
		prev = at
		if at.After(to) {
			return longest
		}
	}
	if gap := to.Sub(prev); gap > longest {
		longest = gap
	}
	return longest
}
