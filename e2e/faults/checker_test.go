package faults

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ms is t0 plus n milliseconds.
func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// ok is an accepted sample on node/tl sent at start ms, returned at end ms.
func ok(node string, tl int64, start, end int) Sample {
	return Sample{Node: node, TL: tl, Start: ms(start), End: ms(end), OK: true}
}

func TestHandovers(t *testing.T) {
	tests := []struct {
		name      string
		samples   []Sample
		wantFrom  string
		wantTo    string
		overlap   bool
		ambiguous bool
		margin    time.Duration
		window    time.Duration
	}{
		{
			name: "clean failover: old primary's last write returned before the new one's first was sent",
			samples: []Sample{ok("n1", 1, 0, 5), ok("n1", 1, 100, 105), ok("n2", 2, 7000, 7004), ok("n2", 2, 7100, 7103),
				{Node: "n1", Start: ms(200), End: ms(1200)}},
			wantFrom: "n1/TL1", wantTo: "n2/TL2", margin: 6895 * time.Millisecond,
		},
		{
			name: "old primary keeps accepting after the new one did: proven overlap",
			samples: []Sample{ok("n1", 1, 0, 5), ok("n2", 2, 7000, 7004), ok("n1", 1, 7100, 7102),
				ok("n1", 1, 9000, 9003)},
			wantFrom: "n1/TL1", wantTo: "n2/TL2", overlap: true,
			margin: -2003 * time.Millisecond, window: 1996 * time.Millisecond,
		},
		{
			name:     "intervals intersect, order unknown: ambiguous, not proven",
			samples:  []Sample{ok("n1", 1, 0, 5), ok("n1", 1, 6990, 7010), ok("n2", 2, 7000, 7004)},
			wantFrom: "n1/TL1", wantTo: "n2/TL2", ambiguous: true, margin: -10 * time.Millisecond,
		},
		{
			name:     "a sample that hung across the other's first write is ambiguous, not an overlap",
			samples:  []Sample{ok("n1", 1, 0, 5), ok("n1", 1, 6000, 7500), ok("n2", 2, 7000, 7004)},
			wantFrom: "n1/TL1", wantTo: "n2/TL2", ambiguous: true, margin: -500 * time.Millisecond,
		},
		{
			name: "switchover and back: the same node on a new timeline is compared with the other node only",
			samples: []Sample{ok("n1", 1, 0, 5), ok("n2", 2, 1000, 1004), ok("n2", 2, 2000, 2004),
				ok("n1", 3, 3000, 3003)},
			wantFrom: "n2/TL2", wantTo: "n1/TL3", margin: 996 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := Handovers(Terms(tt.samples))
			var got *Handover
			for i := range hs {
				if hs[i].To == tt.wantTo && hs[i].From == tt.wantFrom {
					got = &hs[i]
				}
			}
			if got == nil {
				t.Fatalf("no handover %s -> %s in %+v", tt.wantFrom, tt.wantTo, hs)
			}
			if got.Overlap != tt.overlap || got.Ambiguous != tt.ambiguous || got.Margin != tt.margin || got.Window != tt.window {
				t.Fatalf("got overlap %v ambiguous %v margin %s window %s; want %v %v %s %s",
					got.Overlap, got.Ambiguous, got.Margin, got.Window, tt.overlap, tt.ambiguous, tt.margin, tt.window)
			}
			for _, h := range hs {
				if h.From[:2] == h.To[:2] {
					t.Fatalf("a node compared with itself: %+v", h)
				}
			}
		})
	}
}

func TestTermsIgnoresRefusedSamples(t *testing.T) {
	terms := Terms([]Sample{{Node: "n1", Start: ms(0), End: ms(1)}, ok("n2", 1, 50, 51), {Node: "n2", Start: ms(60), End: ms(70)}})
	if len(terms) != 1 || terms[0].Node != "n2" || terms[0].Count != 1 {
		t.Fatalf("terms = %+v, want one n2 term with one sample", terms)
	}
}

func TestLongestGap(t *testing.T) {
	acks := []time.Time{ms(0), ms(10), ms(500), ms(520), ms(3000)}
	tests := []struct {
		from, to int
		want     time.Duration
	}{
		{0, 3000, 2480 * time.Millisecond},
		{5, 600, 490 * time.Millisecond},      // 10 -> 500
		{600, 2000, 1400 * time.Millisecond},  // no ack inside: the whole window
		{2000, 4000, 1000 * time.Millisecond}, // edge: 2000 -> 3000 and 3000 -> 4000
	}
	for _, tt := range tests {
		if got := LongestGap(acks, ms(tt.from), ms(tt.to)); got != tt.want {
			t.Errorf("LongestGap(%d, %d) = %s, want %s", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestLostWritesAndSpan(t *testing.T) {
	acks := []Ack{{ID: 1, TL: 1, LSN: 100}, {ID: 2, TL: 1, LSN: 300}, {ID: 3, TL: 1, LSN: 900}, {ID: 4, TL: 2, LSN: 5000}}
	lost := LostWrites(acks, map[int64]bool{1: true, 4: true})
	if len(lost) != 2 || lost[0].ID != 2 || lost[1].ID != 3 {
		t.Fatalf("lost = %+v, want ids 2 and 3", lost)
	}
	if s := LSNSpan(lost); s != 600 {
		t.Fatalf("LSNSpan = %d, want 600", s)
	}
	if s := LSNSpan(nil); s != 0 {
		t.Fatalf("LSNSpan(nil) = %d", s)
	}
}

func TestPlanCoversEveryKindBeforeRepeating(t *testing.T) {
	o := Options{Faults: 2*len(AllKinds) + 3, Scenario: "random", Kinds: AllKinds}
	r := newRand(42)
	plan := o.plan(r)
	if len(plan) != o.Faults {
		t.Fatalf("plan has %d faults, want %d", len(plan), o.Faults)
	}
	seen := map[Kind]int{}
	for _, k := range plan[:len(AllKinds)] {
		seen[k]++
	}
	if len(seen) != len(AllKinds) {
		t.Fatalf("the first %d faults cover %d kinds: %v", len(AllKinds), len(seen), plan)
	}
	again := o.plan(newRand(42))
	for i := range plan {
		if plan[i] != again[i] {
			t.Fatalf("the same seed gave another plan: %v vs %v", plan, again)
		}
	}
}

// TestAnalyze: lost writes and handovers land in the fault whose window
// holds them, and only real problems become violations.
func TestAnalyze(t *testing.T) {
	faults := []Fault{
		{Seq: 1, Kind: NodeKill, Target: "n1", Injected: ms(1000), Healed: ms(5000), Converged: ms(8000)},
		{Seq: 2, Kind: Switchover, Target: "n2", Injected: ms(9000), Healed: ms(9000), Converged: ms(10000)},
	}
	acks := []Ack{
		{ID: 1, Client: "pooler-n2", At: ms(500), TL: 1, LSN: 100},
		{ID: 2, Client: "pooler-n2", At: ms(990), TL: 1, LSN: 200}, // lost: acked before the kill, never replicated
		{ID: 3, Client: "pooler-n3", At: ms(7000), TL: 2, LSN: 300},
		{ID: 4, Client: "multihost", At: ms(9500), TL: 3, LSN: 400},
	}
	samples := []Sample{ok("n1", 1, 0, 5), ok("n1", 1, 900, 905), ok("n2", 2, 6500, 6505), ok("n3", 3, 9400, 9405)}
	final := Final{Leader: "n3", Digests: map[string]Digest{"n3/acked": {3, "x"}, "n2/acked": {3, "x"}}, ids: map[int64]bool{1: true, 3: true, 4: true}}
	timing := Timing{TTL: 6 * time.Second, LoopWait: time.Second}

	for _, sync := range []bool{false, true} {
		rep := &Report{Sync: sync, Started: ms(0), Ended: ms(11000), Faults: faults}
		rep.analyze(Recorded{Acks: acks, Samples: samples}, final, nil, timing)
		if rep.Lost != 1 || rep.Results[0].Lost != 1 || rep.Results[1].Lost != 0 {
			t.Fatalf("sync %v: lost %d (per fault %d, %d), want 1 in fault 1", sync, rep.Lost, rep.Results[0].Lost, rep.Results[1].Lost)
		}
		if got := len(rep.Violations); (sync && got != 1) || (!sync && got != 0) {
			t.Fatalf("sync %v: violations %q", sync, rep.Violations)
		}
		if m := rep.Results[0].MarginS; m == nil || *m < 5.5 || *m > 5.7 {
			t.Fatalf("fault 1 margin %v, want 5.595s (n1's last write 0.905s, n2's first 6.5s)", m)
		}
		if rep.Results[1].MarginS == nil {
			t.Fatalf("fault 2 has no handover")
		}
		// Unavailability of fault 1: no pooler ack between 1.0s and 7.0s.
		if u := rep.Results[0].UnavailableS; u < 5.99 || u > 6.01 {
			t.Fatalf("fault 1 unavailable %.3fs, want 6s", u)
		}
	}

	// An old primary that keeps taking writes after the new one did.
	rep := &Report{Started: ms(0), Ended: ms(11000), Faults: faults}
	split := append(samples, ok("n1", 1, 7000, 7004))
	rep.analyze(Recorded{Acks: acks, Samples: split}, final, nil, timing)
	if rep.Results[0].Overlaps != 1 || len(rep.Violations) != 1 {
		t.Fatalf("overlaps %d, violations %q; want one overlap in fault 1", rep.Results[0].Overlaps, rep.Violations)
	}

	// The old primary keeps writing after its key was seen gone.
	rep = &Report{Started: ms(0), Ended: ms(11000), Faults: faults}
	keys := []KeyEvent{{At: ms(0), Holder: "n1"}, {At: ms(6000), Holder: ""}, {At: ms(6400), Holder: "n2"}}
	late := append(append([]Sample(nil), samples...), ok("n1", 1, 6100, 6104))
	rep.analyze(Recorded{Acks: acks, Samples: late, Keys: keys}, final, nil, timing)
	if rep.Results[0].StaleWrites != 1 || len(rep.Violations) != 1 || rep.Kinds[0].StaleWrites != 1 {
		t.Fatalf("stale writes %d, violations %q; want one in fault 1", rep.Results[0].StaleWrites, rep.Violations)
	}

	// A replica whose table differs from the primary's.
	rep = &Report{Started: ms(0), Ended: ms(11000), Faults: faults}
	bad := Final{Leader: "n3", Digests: map[string]Digest{"n3/acked": {3, "x"}, "n2/acked": {2, "y"}}, ids: final.ids}
	rep.analyze(Recorded{Acks: acks, Samples: samples}, bad, nil, timing)
	if len(rep.Violations) != 1 {
		t.Fatalf("violations %q, want the differing table", rep.Violations)
	}
}

func TestStaleWrites(t *testing.T) {
	keys := []KeyEvent{{At: ms(0), Holder: "n1"}, {At: ms(6000), Holder: ""}, {At: ms(6100), Holder: "n2"},
		{At: ms(20000), Holder: ""}, {At: ms(20050), Holder: "n1"}}
	tests := []struct {
		name    string
		samples []Sample
		want    []time.Duration // After of each stale write
	}{
		{"fenced in time", []Sample{ok("n1", 1, 100, 105), ok("n1", 1, 5000, 5004), ok("n2", 2, 6300, 6304)}, nil},
		{"old primary writes after its key expired",
			[]Sample{ok("n1", 1, 100, 105), ok("n1", 1, 6200, 6204), ok("n1", 1, 9000, 9003)},
			[]time.Duration{200 * time.Millisecond, 3000 * time.Millisecond}},
		{"a write sent before the loss was seen is not proven stale",
			[]Sample{ok("n1", 1, 100, 105), ok("n1", 1, 5990, 6010)}, nil},
		{"promoted again on a new timeline: not stale",
			[]Sample{ok("n1", 1, 100, 105), ok("n1", 3, 20100, 20104)}, nil},
		{"a new grant seen late (within a second of the write): not stale",
			[]Sample{ok("n1", 1, 100, 105), ok("n1", 1, 20020, 20025)}, nil},
		{"writable without the key long before taking it again",
			[]Sample{ok("n1", 1, 100, 105), ok("n1", 1, 15000, 15004), ok("n1", 1, 20020, 20025)},
			[]time.Duration{9000 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StaleWrites(tt.samples, keys)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %d stale writes", got, len(tt.want))
			}
			for i, sw := range got {
				if sw.After != tt.want[i] {
					t.Fatalf("stale write %d: after %s, want %s", i, sw.After, tt.want[i])
				}
			}
		})
	}
}
