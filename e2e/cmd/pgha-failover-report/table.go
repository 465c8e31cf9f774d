package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// The rows and columns in print order, with their labels; names not
// listed here come after, under their own name.
var (
	scenarios = []string{"switchover", "node", "postgres"}
	clients   = []string{"pooler", "haproxy", "dsn"}
	systems   = []string{"pgha", "patroni"}
	labels    = map[string]string{
		"switchover": "switchover",
		"node":       "kill -9 primary node",
		"postgres":   "kill -9 primary postmaster",
		"pooler":     "replica's pooler¹",
		"haproxy":    "HAProxy",
		"dsn":        "multi-host DSN²",
		"pgha":       "pgha",
		"patroni":    "Patroni",
	}
)

func label(s string) string {
	if l, ok := labels[s]; ok {
		return l
	}
	return s
}

// cell is one system's figures for one scenario and client.
type cell struct {
	runs            int
	gaps            []int64 // ms, sorted
	notResumed      int
	failed, lost    int
	lostUnknownRuns int
}

func (c cell) median() float64 {
	n := len(c.gaps)
	if n%2 == 1 {
		return float64(c.gaps[n/2])
	}
	return float64(c.gaps[n/2-1]+c.gaps[n/2]) / 2
}

type key struct{ scenario, client, system string }

// summary is every cell, and the names seen, in print order.
type summary struct {
	cells                       map[key]*cell
	scenarios, clients, systems []string
}

func summarize(runs []clientRun) summary {
	s := summary{cells: map[key]*cell{}}
	seen := map[string]bool{}
	for _, r := range runs {
		k := key{r.Scenario, r.Client, r.System}
		c := s.cells[k]
		if c == nil {
			c = &cell{}
			s.cells[k] = c
		}
		c.runs++
		c.gaps = append(c.gaps, r.GapMS)
		if !r.Resumed {
			c.notResumed++
		}
		c.failed += r.Failed
		c.lost += r.Lost
		if !r.LostKnown {
			c.lostUnknownRuns++
		}
		seen["s/"+r.Scenario], seen["c/"+r.Client], seen["y/"+r.System] = true, true, true
	}
	for _, c := range s.cells {
		sort.Slice(c.gaps, func(i, j int) bool { return c.gaps[i] < c.gaps[j] })
	}
	s.scenarios = ordered(scenarios, "s/", seen)
	s.clients = ordered(clients, "c/", seen)
	s.systems = ordered(systems, "y/", seen)
	return s
}

// ordered lists the names seen under prefix: the known ones in order,
// then the others sorted.
func ordered(known []string, prefix string, seen map[string]bool) []string {
	var out, extra []string
	isKnown := map[string]bool{}
	for _, n := range known {
		isKnown[n] = true
		if seen[prefix+n] {
			out = append(out, n)
		}
	}
	for k := range seen {
		if n, ok := strings.CutPrefix(k, prefix); ok && !isKnown[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func secs(ms float64) string { return fmt.Sprintf("%.2f", ms/1000) }

// gapText is "median (min-max)" in seconds; a max that is only a lower
// bound (a client that never wrote again) is marked ">". withRuns adds the
// number of runs, for a column whose cells do not all have the same.
func (c cell) gapText(withRuns bool) string {
	max := secs(float64(c.gaps[len(c.gaps)-1]))
	if c.notResumed > 0 {
		max = ">" + max
	}
	t := fmt.Sprintf("%s (%s-%s)", secs(c.median()), secs(float64(c.gaps[0])), max)
	if withRuns {
		t += fmt.Sprintf(", %d runs", c.runs)
	}
	return t
}

// writesText is "failed / lost".
func (c cell) writesText() string {
	lost := fmt.Sprint(c.lost)
	if c.lostUnknownRuns > 0 {
		lost = fmt.Sprintf("%d (%d runs unread)", c.lost, c.lostUnknownRuns)
	}
	return fmt.Sprintf("%d / %s", c.failed, lost)
}

// runsOf is the number of runs of every cell of a system, or 0 when they
// differ.
func (s summary) runsOf(system string) int {
	n := -1
	for k, c := range s.cells {
		if k.system != system {
			continue
		}
		if n == -1 {
			n = c.runs
		} else if n != c.runs {
			return 0
		}
	}
	return max(n, 0)
}

// printTable prints one row per scenario and client; per system the
// longest write gap (median, min-max) and the failed and lost writes
// summed over the runs; with two systems, the ratio of the median gaps.
func printTable(w io.Writer, s summary) {
	head := []string{"scenario", "client"}
	runs := map[string]int{}
	for _, y := range s.systems {
		runs[y] = s.runsOf(y)
		h := label(y)
		if runs[y] > 0 {
			h += fmt.Sprintf(", %d runs", runs[y])
		}
		head = append(head, h+": longest write gap, s, median (min-max)", label(y)+": failed / lost writes")
	}
	ratio := len(s.systems) == 2
	if ratio {
		head = append(head, fmt.Sprintf("median gap %s / %s", label(s.systems[0]), label(s.systems[1])))
	}
	fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat(" --- |", len(head)))
	for _, sc := range s.scenarios {
		for _, cl := range s.clients {
			row := []string{label(sc), label(cl)}
			var medians []float64
			found := false
			for _, y := range s.systems {
				c := s.cells[key{sc, cl, y}]
				if c == nil {
					row = append(row, "n/a", "n/a")
					continue
				}
				found = true
				medians = append(medians, c.median())
				row = append(row, c.gapText(runs[y] == 0), c.writesText())
			}
			if !found {
				continue
			}
			if ratio {
				if len(medians) == 2 && medians[1] > 0 {
					row = append(row, fmt.Sprintf("%.2f", medians[0]/medians[1]))
				} else {
					row = append(row, "n/a")
				}
			}
			fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
		}
	}
}

// printNotes explains the table's terms under it.
func printNotes(w io.Writer) {
	fmt.Fprintln(w, `
Longest write gap: the longest time between two acknowledged writes of a client writing one row every 20 ms (one connection, reconnecting after an error). Failed writes: attempts that returned an error, summed over the runs (a client tries again 20 ms after an error, so a fast error counts many times). Lost writes: acknowledged rows missing on the final primary.
¹ pgha: the embedded pooler of a node that is neither the old nor the new primary (switchover), of a surviving replica (kills). Patroni has no pooler: PgBouncer (transaction pooling) in front of HAProxy.
² postgres://host1,host2,host3/...?target_session_attrs=read-write, straight to Postgres.`)
}
