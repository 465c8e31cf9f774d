package faults

import (
	"fmt"
	"sort"
	"time"
)

// Term is the stretch in which one node accepted direct writes on one
// timeline: a primary's term. Every accepted sample of the node on that
// timeline belongs to it; First and Last are the earliest and latest.
type Term struct {
	Node  string `json:"node"`
	TL    int64  `json:"timeline"`
	First Sample `json:"-"`
	Last  Sample `json:"-"`
	Count int    `json:"accepted_samples"`
}

func (t Term) String() string { return fmt.Sprintf("%s/TL%d", t.Node, t.TL) }

// Terms groups accepted samples by (node, timeline), ordered by the start
// of their first sample.
func Terms(samples []Sample) []Term {
	type key struct {
		node string
		tl   int64
	}
	idx := map[key]int{}
	var terms []Term
	for _, s := range samples {
		if !s.OK {
			continue
		}
		k := key{s.Node, s.TL}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(terms)
			terms = append(terms, Term{Node: s.Node, TL: s.TL, First: s, Last: s, Count: 1})
			continue
		}
		t := &terms[i]
		t.Count++
		if s.Start.Before(t.First.Start) {
			t.First = s
		}
		if s.End.After(t.Last.End) {
			t.Last = s
		}
	}
	sort.Slice(terms, func(i, j int) bool { return terms[i].First.Start.Before(terms[j].First.Start) })
	return terms
}

// Handover is the passage from one term to the next on another node, as
// the sampler saw it.
//
// A sample that was accepted proves the node took a write at some
// instant inside [Start, End] of that sample; nothing more. So, for an
// earlier term A (on one node) and a later term B (on another node,
// First.Start of B after First.Start of A):
//
//   - Margin = B.First.Start - A.Last.End. When positive, A's last
//     accepted write had returned before B's first was sent: A refused
//     writes (as far as sampled) before B took any. That is the figure
//     "time between the old primary's last accepted write and the new
//     primary's first".
//   - Overlap is proven when A.Last.Start > B.First.End: A took a write
//     that was sent after B's first write had been acknowledged, so both
//     nodes accepted writes at once (A on a timeline B had left). Window
//     = A.Last.Start - B.First.End is a lower bound of how long both were
//     writable.
//   - Otherwise, when Margin <= 0, the two samples' intervals intersect
//     and the order of the two writes is unknown: Ambiguous (neither
//     proven safe nor proven overlap; with 100 ms sampling and ms-long
//     writes it needs a sample that hung).
//
// Terms of one node on different timelines are not compared: a node that
// is promoted again starts a new timeline, and its own history is linear.
type Handover struct {
	From      string        `json:"from"`
	To        string        `json:"to"`
	FromLast  time.Time     `json:"from_last_write"`
	ToFirst   time.Time     `json:"to_first_write"`
	Margin    time.Duration `json:"margin_ns"`
	Overlap   bool          `json:"overlap"`
	Window    time.Duration `json:"overlap_window_ns,omitempty"`
	Ambiguous bool          `json:"ambiguous,omitempty"`
}

// Handovers returns, for every term B that is not the first, its
// handover from the earlier term A (other node) whose last accepted write
// ended latest; plus every other earlier term that overlaps B.
func Handovers(terms []Term) []Handover {
	var out []Handover
	for j := 1; j < len(terms); j++ {
		b := terms[j]
		var latest *Term
		for i := 0; i < j; i++ {
			a := terms[i]
			if a.Node == b.Node {
				continue
			}
			h := handover(a, b)
			if h.Overlap || h.Ambiguous {
				out = append(out, h)
			}
			if latest == nil || a.Last.End.After(latest.Last.End) {
				latest = &terms[i]
			}
		}
		if latest != nil {
			if h := handover(*latest, b); !h.Overlap && !h.Ambiguous {
				out = append(out, h)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ToFirst.Before(out[j].ToFirst) })
	return out
}

func handover(a, b Term) Handover {
	h := Handover{From: a.String(), To: b.String(), FromLast: a.Last.End, ToFirst: b.First.Start,
		Margin: b.First.Start.Sub(a.Last.End)}
	switch {
	case a.Last.Start.After(b.First.End):
		h.Overlap = true
		h.Window = a.Last.Start.Sub(b.First.End)
	case h.Margin <= 0:
		h.Ambiguous = true
	}
	return h
}

// LostWrites returns the acknowledged writes whose id is not in final.
func LostWrites(acks []Ack, final map[int64]bool) []Ack {
	var lost []Ack
	for _, a := range acks {
		if !final[a.ID] {
			lost = append(lost, a)
		}
	}
	return lost
}

// LongestGap is the longest stretch inside [from, to] without an ack
// time (the edges count: from to the first ack, the last ack to to).
func LongestGap(ackTimes []time.Time, from, to time.Time) time.Duration {
	if !to.After(from) {
		return 0
	}
	prev := from
	var longest time.Duration
	for _, t := range ackTimes {
		if t.Before(from) {
			continue
		}
		if t.After(to) {
			break
		}
		if d := t.Sub(prev); d > longest {
			longest = d
		}
		prev = t
	}
	if d := to.Sub(prev); d > longest {
		longest = d
	}
	return longest
}

// LSNSpan is the WAL distance between the earliest and the latest lost
// write on the timeline that has most of them (0 for none).
func LSNSpan(lost []Ack) uint64 {
	byTL := map[int64][2]uint64{}
	count := map[int64]int{}
	for _, a := range lost {
		r, ok := byTL[a.TL]
		if !ok {
			r = [2]uint64{a.LSN, a.LSN}
		}
		r[0] = min(r[0], a.LSN)
		r[1] = max(r[1], a.LSN)
		byTL[a.TL] = r
		count[a.TL]++
	}
	var best int64
	for tl, n := range count {
		if n > count[best] {
			best = tl
		}
	}
	r := byTL[best]
	return r[1] - r[0]
}

// median of durations (0 for none).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
