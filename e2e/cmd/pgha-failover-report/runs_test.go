package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestAnalyze(t *testing.T) {
	atts := []attempt{
		{send: 90, end: 95},                     // start-up error: not counted
		{send: 100, end: 110, ok: true, id: 1},  // first write
		{send: 130, end: 140, ok: true, id: 2},  // gap 30
		{send: 160, end: 900, ok: false},        // the event at 150
		{send: 920, end: 930, ok: false},        // failed
		{send: 950, end: 1000, ok: true, id: 3}, // gap 860
		{send: 1020, end: 1030, ok: true, id: 4},
	}
	r := analyze(atts, 150, map[int64]bool{1: true, 2: true, 4: true})
	if r.GapMS != 860 || !r.Resumed || r.Failed != 2 || r.Acked != 4 || r.Lost != 1 || !r.LostKnown {
		t.Fatalf("got %+v", r)
	}
	r = analyze(atts[:5], 150, nil)
	if r.GapMS != 790 || r.Resumed || r.LostKnown {
		t.Fatalf("never resumed: got %+v", r)
	}
}

func TestTable(t *testing.T) {
	runs := []clientRun{
		{System: "pgha", Scenario: "switchover", Client: "pooler", GapMS: 400, Resumed: true, LostKnown: true},
		{System: "pgha", Scenario: "switchover", Client: "pooler", GapMS: 500, Resumed: true, LostKnown: true},
		{System: "patroni", Scenario: "switchover", Client: "pooler", GapMS: 1800, Resumed: true, Failed: 3, LostKnown: true},
	}
	var b bytes.Buffer
	printTable(&b, summarize(runs))
	want := "| switchover | replica's pooler¹ | 0.45 (0.40-0.50) | 0 / 0 | 1.80 (1.80-1.80) | 3 / 0 | 0.25 |"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("table:\n%s\nwant a row:\n%s", b.String(), want)
	}
}
