package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// clientRun is what one client saw in one run.
type clientRun struct {
	System, Scenario, Client, Run string
	// GapMS is the longest time between two acknowledged writes (their
	// end times); when the client never wrote again after the event, the
	// time from its last acknowledged write to its last attempt.
	GapMS int64
	// Resumed: an acknowledged write was sent after the event.
	Resumed bool
	// Acked and Failed count acknowledged and failed attempts (failures
	// before the client's first acknowledged write are its start-up, not
	// counted).
	Acked, Failed int
	// Lost counts acknowledged ids missing on the final primary; LostKnown
	// is false when that primary's ids could not be read.
	Lost      int
	LostKnown bool
}

// attempt is one line of pgha-writer's output.
type attempt struct {
	send, end int64
	ok        bool
	id        int64
}

// parseLog reads "<send_ms> <end_ms> ok <id>" and "<send_ms> <end_ms> err
// <message>" lines; other lines are ignored.
func parseLog(path string) ([]attempt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []attempt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		send, err1 := strconv.ParseInt(fs[0], 10, 64)
		end, err2 := strconv.ParseInt(fs[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		a := attempt{send: send, end: end}
		switch fs[2] {
		case "ok":
			if len(fs) < 4 {
				continue
			}
			id, err := strconv.ParseInt(fs[3], 10, 64)
			if err != nil {
				continue
			}
			a.ok, a.id = true, id
		case "err":
		default:
			continue
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// readIDs reads one id per line.
func readIDs(path string) (map[int64]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ids := map[int64]bool{}
	for _, l := range strings.Fields(string(b)) {
		id, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an id", path, l)
		}
		ids[id] = true
	}
	return ids, nil
}

// analyze measures one client's run from its attempts, the event time and
// the ids on the final primary (nil: unknown).
func analyze(atts []attempt, eventMS int64, final map[int64]bool) clientRun {
	var r clientRun
	sort.Slice(atts, func(i, j int) bool { return atts[i].send < atts[j].send })
	started := false
	var lastOK, lastEnd int64
	for _, a := range atts {
		if a.end > lastEnd {
			lastEnd = a.end
		}
		if !a.ok {
			if started {
				r.Failed++
			}
			continue
		}
		if started && a.end-lastOK > r.GapMS {
			r.GapMS = a.end - lastOK
		}
		started = true
		if a.end > lastOK {
			lastOK = a.end
		}
		r.Acked++
		if a.send > eventMS {
			r.Resumed = true
		}
	}
	if started && !r.Resumed && lastEnd-lastOK > r.GapMS {
		r.GapMS = lastEnd - lastOK
	}
	if final != nil {
		r.LostKnown = true
		for _, a := range atts {
			if a.ok && !final[a.id] {
				r.Lost++
			}
		}
	}
	return r
}

// readRuns walks DIR/<system>/<scenario>/<run>/<client>.log.
func readRuns(dir string) ([]clientRun, error) {
	logs, err := filepath.Glob(filepath.Join(dir, "*", "*", "*", "*.log"))
	if err != nil {
		return nil, err
	}
	sort.Strings(logs)
	var out []clientRun
	for _, lp := range logs {
		runDir := filepath.Dir(lp)
		client := strings.TrimSuffix(filepath.Base(lp), ".log")
		b, err := os.ReadFile(filepath.Join(runDir, "event_ms"))
		if err != nil {
			continue // a run cut short before its event
		}
		eventMS, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s/event_ms: %w", runDir, err)
		}
		atts, err := parseLog(lp)
		if err != nil {
			return nil, err
		}
		final, err := readIDs(filepath.Join(runDir, client+".final"))
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		r := analyze(atts, eventMS, final)
		scenarioDir := filepath.Dir(runDir)
		r.System = filepath.Base(filepath.Dir(scenarioDir))
		r.Scenario = filepath.Base(scenarioDir)
		r.Run = filepath.Base(runDir)
		r.Client = client
		out = append(out, r)
	}
	return out, nil
}
