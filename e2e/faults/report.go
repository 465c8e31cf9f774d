package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// maxLagOnFailover is the generated clusters' maximum_lag_on_failover.
const maxLagOnFailover = 1 << 20

// Report is one run's outcome.
type Report struct {
	Seed     int64         `json:"seed"`
	Sync     bool          `json:"synchronous_mode"`
	Scenario string        `json:"scenario"`
	TTL      time.Duration `json:"-"`
	LoopWait time.Duration `json:"-"`
	NoNetem  string        `json:"delay_skipped,omitempty"`
	Started  time.Time     `json:"started"`
	Ended    time.Time     `json:"ended"`

	Faults     []Fault                `json:"-"`
	Results    []FaultResult          `json:"faults"`
	Kinds      []KindSummary          `json:"kinds"`
	Handovers  []HandoverJSON         `json:"handovers"`
	LeaderKey  []KeyEvent             `json:"leader_key"`
	Clients    map[string]ClientStats `json:"clients"`
	Acked      int                    `json:"acked_writes"`
	Lost       int                    `json:"lost_acked_writes"`
	LostIDs    []int64                `json:"lost_ids,omitempty"` // the first 200
	Final      Final                  `json:"final"`
	Violations []string               `json:"violations"`
}

// FaultResult is one fault with what the checker found in its window:
// the time from the previous fault's convergence to its own.
type FaultResult struct {
	Fault
	HoldS          float64  `json:"hold_s"`
	UnavailableS   float64  `json:"unavailable_s"`      // longest gap without an ack through any pooler, injection to convergence
	WorstPoolerS   float64  `json:"worst_pooler_gap_s"` // the same for the one pooler that waited longest
	WorstPooler    string   `json:"worst_pooler"`
	ConvergeS      float64  `json:"converge_s"` // heal to convergence (with the reinit when one was needed)
	Lost           int      `json:"lost_acked_writes"`
	LostSpanBytes  uint64   `json:"lost_wal_span_bytes,omitempty"`
	Overlaps       int      `json:"overlaps"`
	MaxWindowS     float64  `json:"max_overlap_window_s,omitempty"`
	Ambiguous      int      `json:"ambiguous_handovers,omitempty"`
	StaleWrites    int      `json:"writes_after_key_lost"`
	MaxStaleS      float64  `json:"max_write_after_key_lost_s,omitempty"`
	MarginS        *float64 `json:"min_margin_s,omitempty"` // over the window's handovers; negative when they overlap
	Violations     []string `json:"violations,omitempty"`
	windowStart    time.Time
	unavailable    time.Duration
	convergeTime   time.Duration
	margin         *time.Duration
	maxOverlapTime time.Duration
	maxStale       time.Duration
}

// KindSummary aggregates the faults of one kind.
type KindSummary struct {
	Kind            Kind     `json:"kind"`
	Count           int      `json:"count"`
	UnavailMedianS  float64  `json:"unavailable_median_s"`
	UnavailMaxS     float64  `json:"unavailable_max_s"`
	Lost            int      `json:"lost_acked_writes"`
	Overlaps        int      `json:"overlaps"`
	MaxWindowS      float64  `json:"max_overlap_window_s"`
	StaleWrites     int      `json:"writes_after_key_lost"`
	ConvergeMedianS float64  `json:"converge_median_s"`
	ConvergeMaxS    float64  `json:"converge_max_s"`
	MinMarginS      *float64 `json:"min_margin_s,omitempty"`
	Violations      int      `json:"violations"`
}

// HandoverJSON is a Handover with times in seconds.
type HandoverJSON struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	FromLast  time.Time `json:"from_last_write"`
	ToFirst   time.Time `json:"to_first_write"`
	MarginS   float64   `json:"margin_s"`
	Overlap   bool      `json:"overlap"`
	WindowS   float64   `json:"overlap_window_s,omitempty"`
	Ambiguous bool      `json:"ambiguous,omitempty"`
	Fault     int       `json:"fault"` // the fault whose window holds To's first write (0: none)
}

// analyze runs the checker over what the run recorded.
func (rep *Report) analyze(rec Recorded, final Final, finalErr error, t Timing) {
	acks, samples := rec.Acks, rec.Samples
	rep.Clients, rep.Final, rep.Acked, rep.LeaderKey = rec.Stats, final, len(acks), rec.Keys
	sort.Slice(acks, func(i, j int) bool { return acks[i].At.Before(acks[j].At) })
	var poolerAcks []time.Time
	perPooler := map[string][]time.Time{}
	for _, a := range acks {
		if strings.HasPrefix(a.Client, "pooler-") {
			poolerAcks = append(poolerAcks, a.At)
			perPooler[a.Client] = append(perPooler[a.Client], a.At)
		}
	}
	// Windows: fault i owns (converged of fault i-1, converged of fault i].
	prev := rep.Started
	for _, f := range rep.Faults {
		fr := FaultResult{Fault: f, HoldS: f.Hold.Seconds(), windowStart: prev}
		end := f.Converged
		if end.IsZero() || end.Before(f.Injected) {
			end = rep.Ended
		}
		fr.unavailable = LongestGap(poolerAcks, f.Injected, end)
		fr.UnavailableS = fr.unavailable.Seconds()
		for client, times := range perPooler {
			if g := LongestGap(times, f.Injected, end).Seconds(); g > fr.WorstPoolerS {
				fr.WorstPoolerS, fr.WorstPooler = g, client
			}
		}
		if f.Converged.After(f.Healed) { // also when it took a reinit, or never came (the bound)
			fr.convergeTime = f.Converged.Sub(f.Healed)
			fr.ConvergeS = fr.convergeTime.Seconds()
		}
		if f.Error != "" {
			fr.Violations = append(fr.Violations, f.Error)
		}
		if f.Kind == DaemonRestart && fr.unavailable > t.LoopWait {
			fr.Violations = append(fr.Violations, fmt.Sprintf("write gap %.2fs through the poolers after a daemon restart on the primary, more than loop_wait %s", fr.unavailable.Seconds(), t.LoopWait))
		}
		rep.Results = append(rep.Results, fr)
		prev = f.Converged
	}
	owner := func(at time.Time) *FaultResult {
		for i := range rep.Results {
			r := &rep.Results[i]
			if at.After(r.windowStart) && !at.After(r.Converged) {
				return r
			}
		}
		return nil
	}

	// (a) lost acknowledged writes.
	if finalErr != nil {
		rep.Violations = append(rep.Violations, "final state: "+finalErr.Error())
	} else {
		lost := LostWrites(acks, final.ids)
		rep.Lost = len(lost)
		byFault := map[*FaultResult][]Ack{}
		for _, a := range lost {
			if len(rep.LostIDs) < 200 {
				rep.LostIDs = append(rep.LostIDs, a.ID)
			}
			byFault[owner(a.At)] = append(byFault[owner(a.At)], a)
		}
		for r, l := range byFault {
			if r == nil {
				rep.Violations = append(rep.Violations, fmt.Sprintf("%d acknowledged writes lost outside any fault's window (first id %d)", len(l), l[0].ID))
				continue
			}
			r.Lost, r.LostSpanBytes = len(l), LSNSpan(l)
			switch {
			case rep.Sync:
				r.Violations = append(r.Violations, fmt.Sprintf("%d acknowledged writes lost in synchronous mode (ids %s)", len(l), idList(l)))
			case r.LostSpanBytes > maxLagOnFailover:
				r.Violations = append(r.Violations, fmt.Sprintf("%d acknowledged writes lost over %d bytes of WAL, more than maximum_lag_on_failover (%d)", len(l), r.LostSpanBytes, maxLagOnFailover))
			}
		}
		// (c) every replica holds the primary's tables.
		for _, table := range []string{"acked", "probe"} {
			want := final.Digests[final.Leader+"/"+table]
			for key, d := range final.Digests {
				if strings.HasSuffix(key, "/"+table) && d != want {
					rep.Violations = append(rep.Violations, fmt.Sprintf("table %s differs: %s has %d rows (hash %s), primary %s has %d (hash %s)",
						table, strings.TrimSuffix(key, "/"+table), d.Rows, d.Hash, final.Leader, want.Rows, want.Hash))
				}
			}
		}
	}

	// (b) two writable primaries.
	for _, h := range Handovers(Terms(samples)) {
		hj := HandoverJSON{From: h.From, To: h.To, FromLast: h.FromLast, ToFirst: h.ToFirst, MarginS: h.Margin.Seconds(),
			Overlap: h.Overlap, WindowS: h.Window.Seconds(), Ambiguous: h.Ambiguous}
		r := owner(h.ToFirst)
		if r != nil {
			hj.Fault = r.Seq
		}
		rep.Handovers = append(rep.Handovers, hj)
		what := fmt.Sprintf("%s accepted a write %.3fs after %s's first accepted write returned (margin %.3fs)", h.From, h.Window.Seconds(), h.To, h.Margin.Seconds())
		if r == nil {
			if h.Overlap {
				rep.Violations = append(rep.Violations, "two writable primaries outside any fault's window: "+what)
			}
			continue
		}
		if r.margin == nil || h.Margin < *r.margin {
			m := h.Margin
			r.margin = &m
			s := m.Seconds()
			r.MarginS = &s
		}
		switch {
		case h.Overlap:
			r.Overlaps++
			r.maxOverlapTime = max(r.maxOverlapTime, h.Window)
			r.MaxWindowS = r.maxOverlapTime.Seconds()
			r.Violations = append(r.Violations, "two writable primaries: "+what)
		case h.Ambiguous:
			r.Ambiguous++
			if r.Kind == DaemonKill || r.Kind == DaemonStop {
				r.Violations = append(r.Violations, fmt.Sprintf("%s's last accepted write and %s's first overlap in time (order unknown, margin %.3fs)", h.From, h.To, h.Margin.Seconds()))
			}
		}
	}
	// (b') writes a node took after it had lost the leader key.
	type group struct {
		r    *FaultResult
		node string
		tl   int64
	}
	stale := map[group][]StaleWrite{}
	var order []group
	for _, sw := range StaleWrites(samples, rec.Keys) {
		g := group{owner(sw.Sample.Start), sw.Node, sw.TL}
		if _, ok := stale[g]; !ok {
			order = append(order, g)
		}
		stale[g] = append(stale[g], sw)
	}
	for _, g := range order {
		ws := stale[g]
		last := ws[0]
		for _, w := range ws {
			if w.After > last.After {
				last = w
			}
		}
		what := fmt.Sprintf("%d writes accepted after the node lost the leader key; the last: %s", len(ws), last)
		if g.r == nil {
			rep.Violations = append(rep.Violations, "outside any fault's window: "+what)
			continue
		}
		g.r.StaleWrites += len(ws)
		g.r.maxStale = max(g.r.maxStale, last.After)
		g.r.MaxStaleS = g.r.maxStale.Seconds()
		g.r.Violations = append(g.r.Violations, what)
	}
	rep.summarize()
}

func (rep *Report) summarize() {
	byKind := map[Kind][]*FaultResult{}
	var order []Kind
	for i := range rep.Results {
		r := &rep.Results[i]
		if _, ok := byKind[r.Kind]; !ok {
			order = append(order, r.Kind)
		}
		byKind[r.Kind] = append(byKind[r.Kind], r)
		for _, v := range r.Violations {
			rep.Violations = append(rep.Violations, fmt.Sprintf("fault %d (%s on %s): %s", r.Seq, r.Kind, r.Target, v))
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	for _, k := range order {
		rs := byKind[k]
		s := KindSummary{Kind: k, Count: len(rs)}
		var un, cv []time.Duration
		var minMargin *time.Duration
		var win time.Duration
		for _, r := range rs {
			un = append(un, r.unavailable)
			if r.convergeTime > 0 {
				cv = append(cv, r.convergeTime)
			}
			s.Lost += r.Lost
			s.Overlaps += r.Overlaps
			s.StaleWrites += r.StaleWrites
			win = max(win, r.maxOverlapTime)
			s.Violations += len(r.Violations)
			if r.margin != nil && (minMargin == nil || *r.margin < *minMargin) {
				m := *r.margin
				minMargin = &m
			}
		}
		s.UnavailMedianS, s.UnavailMaxS = median(un).Seconds(), maxDur(un).Seconds()
		s.ConvergeMedianS, s.ConvergeMaxS = median(cv).Seconds(), maxDur(cv).Seconds()
		s.MaxWindowS = win.Seconds()
		if minMargin != nil {
			v := minMargin.Seconds()
			s.MinMarginS = &v
		}
		rep.Kinds = append(rep.Kinds, s)
	}
	if rep.Violations == nil {
		rep.Violations = []string{}
	}
}

func idList(l []Ack) string {
	var b strings.Builder
	for i, a := range l {
		if i == 10 {
			fmt.Fprintf(&b, ", ... %d more", len(l)-10)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d via %s on %s TL%d", a.ID, a.Client, a.Server, a.TL)
	}
	return b.String()
}

// WriteJSON writes the report to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// WriteTable prints the per-kind table, then every fault, handover and
// violation.
func (rep *Report) WriteTable(w io.Writer) {
	mode := "async"
	if rep.Sync {
		mode = "sync"
	}
	fmt.Fprintf(w, "\nfault suite: seed %d, %s, scenario %s, ttl %s, %d faults, %d acknowledged writes, %d lost\n",
		rep.Seed, mode, rep.Scenario, rep.TTL, len(rep.Results), rep.Acked, rep.Lost)
	if rep.NoNetem != "" {
		fmt.Fprintf(w, "net-degrade: delay skipped (%s); loss applied with nft\n", rep.NoNetem)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tcount\tunavail med\tunavail max\tlost acked\toverlaps\tmax window\tafter key lost\tconverge med\tconverge max\tmin margin\tviolations\t")
	for _, k := range rep.Kinds {
		margin := "-"
		if k.MinMarginS != nil {
			margin = fmt.Sprintf("%.2fs", *k.MinMarginS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2fs\t%.2fs\t%d\t%d\t%.2fs\t%d\t%.1fs\t%.1fs\t%s\t%d\t\n", k.Kind, k.Count, k.UnavailMedianS, k.UnavailMaxS,
			k.Lost, k.Overlaps, k.MaxWindowS, k.StaleWrites, k.ConvergeMedianS, k.ConvergeMaxS, margin, k.Violations)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nfaults:")
	for _, r := range rep.Results {
		margin := ""
		if r.MarginS != nil {
			margin = fmt.Sprintf(", margin %.2fs", *r.MarginS)
		}
		fmt.Fprintf(w, "  %2d %-19s %-3s %-8s hold %5.1fs  %s->%s  unavailable %5.2fs (%s alone %5.2fs)  converged %5.1fs  lost %d  overlaps %d%s%s\n",
			r.Seq, r.Kind, r.Target, r.Role, r.HoldS, r.Leader, r.NewLeader, r.UnavailableS, r.WorstPooler, r.WorstPoolerS,
			r.ConvergeS, r.Lost, r.Overlaps, margin, prefixed("  ", r.Detail))
	}
	fmt.Fprintf(w, "\nclients:")
	var names []string
	for n := range rep.Clients {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := rep.Clients[n]
		fmt.Fprintf(w, "  %s %d/%d acked", n, s.Acked, s.Attempts)
	}
	fmt.Fprintln(w)
	if len(rep.Violations) == 0 {
		fmt.Fprintln(w, "violations: none")
		return
	}
	fmt.Fprintf(w, "violations (%d):\n", len(rep.Violations))
	for _, v := range rep.Violations {
		fmt.Fprintln(w, "  - "+v)
	}
}
