package faults

import (
	"context"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/leader"
)

// KeyEvent is a change of the leader key as the client host saw it: the
// key now names Holder, or is gone ("").
type KeyEvent struct {
	At     time.Time `json:"at"`
	Holder string    `json:"holder"`
}

// watchLeaderKey records every change of holder of the leader key until
// ctx ends (re-watching from the last revision when a watch breaks).
func (w *Workload) watchLeaderKey(ctx context.Context) {
	key := leader.Prefix("/service/", scope) + "leader"
	var rev int64
	for rev == 0 {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := w.c.cli.Get(gctx, key)
		cancel()
		if err == nil {
			holder := ""
			if len(resp.Kvs) > 0 {
				holder = string(resp.Kvs[0].Value)
			}
			w.keyEvent(holder)
			rev = resp.Header.Revision
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		for resp := range w.c.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev+1)) {
			for _, ev := range resp.Events {
				holder := ""
				if ev.Type == clientv3.EventTypePut {
					holder = string(ev.Kv.Value)
				}
				w.keyEvent(holder)
				rev = ev.Kv.ModRevision
			}
		}
		select { // the watch broke (no leader on that member, ...): again
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *Workload) keyEvent(holder string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.keys); n > 0 && w.keys[n-1].Holder == holder {
		return
	}
	w.keys = append(w.keys, KeyEvent{At: time.Now(), Holder: holder})
}

// StaleWrite is a write a node accepted after it had lost the leader key
// (on the timeline it had written on while it held the key).
type StaleWrite struct {
	Node   string
	TL     int64
	Lost   time.Time     // when the client host saw the key leave the node
	Sample Sample        // the accepted write
	After  time.Duration // Sample.Start - Lost
}

func (s StaleWrite) String() string {
	return fmt.Sprintf("%s/TL%d accepted a write sent %.3fs after the leader key was seen leaving it", s.Node, s.TL, s.After.Seconds())
}

// StaleWrites finds accepted direct writes that a node took after it had
// lost the leader key. The key's changes are seen from the client host a
// little after they happen, so "after" is proven: the write was sent
// after the loss was seen. A node counts only on the timeline it was
// writing on while it held the key (a later promotion starts a new
// timeline), and not when it is seen taking the key again within a
// second of the write (the watch may lag the new grant).
func StaleWrites(samples []Sample, events []KeyEvent) []StaleWrite {
	type stint struct {
		node       string
		from, till time.Time // till zero: still held at the end
	}
	var stints []stint
	for i, e := range events {
		if e.Holder == "" {
			continue
		}
		s := stint{node: e.Holder, from: e.At}
		for _, later := range events[i+1:] {
			if later.Holder != e.Holder {
				s.till = later.At
				break
			}
		}
		stints = append(stints, s)
	}
	byNode := map[string][]Sample{}
	for _, s := range samples {
		if s.OK {
			byNode[s.Node] = append(byNode[s.Node], s)
		}
	}
	for _, ss := range byNode {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Start.Before(ss[j].Start) })
	}
	holdsAgain := func(node string, from, to time.Time) bool {
		for _, st := range stints {
			if st.node == node && !st.from.Before(from) && !st.from.After(to) {
				return true
			}
		}
		return false
	}
	var out []StaleWrite
	for i, st := range stints {
		if st.till.IsZero() {
			continue
		}
		next := time.Time{} // the node's next stint, if any
		for _, later := range stints[i+1:] {
			if later.node == st.node {
				next = later.from
				break
			}
		}
		var tl int64 // the timeline it wrote on while holding the key
		for _, s := range byNode[st.node] {
			if !s.Start.Before(st.from) && s.End.Before(st.till) {
				tl = s.TL
			}
		}
		if tl == 0 {
			continue
		}
		for _, s := range byNode[st.node] {
			if s.TL != tl || !s.Start.After(st.till) || (!next.IsZero() && !s.Start.Before(next)) {
				continue
			}
			if holdsAgain(st.node, s.Start, s.End.Add(time.Second)) {
				continue
			}
			out = append(out, StaleWrite{Node: st.node, TL: tl, Lost: st.till, Sample: s, After: s.Start.Sub(st.till)})
		}
	}
	return out
}
