package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDCSURL(t *testing.T) {
	for in, want := range map[string][]string{
		"etcd3://127.0.0.1:2379":      {"http://127.0.0.1:2379"},
		"etcd://a:1,etcd3://b:2":      {"http://a:1", "http://b:2"},
		"http://127.0.0.1:2379/":      {"http://127.0.0.1:2379"},
		"https://h:2379":              {"https://h:2379"},
		"127.0.0.1:2379":              {"http://127.0.0.1:2379"},
		"etcd3s://h:1, etcd3://h:2 ,": {"https://h:1", "http://h:2"},
	} {
		got, err := parseDCSURL(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseDCSURL(%q) = %v %v, want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"consul://h:8500": `unknown scheme "consul"`,
		"etcd3://nohost":  `"nohost" is not host:port`,
		",":               "names no endpoint",
	} {
		if _, err := parseDCSURL(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseDCSURL(%q) err = %v, want %q", in, err, want)
		}
	}
}

func TestSetPatch(t *testing.T) {
	patch := map[string]any{}
	for _, kv := range []string{"ttl=30", "postgresql.parameters.pg_stat_statements.max=1000", "postgresql.use_slots=false", "pause=null", "loop_wait= 2 "} {
		if err := setPatch(patch, kv); err != nil {
			t.Fatalf("setPatch(%q): %v", kv, err)
		}
	}
	want := map[string]any{"ttl": 30, "loop_wait": 2, "pause": nil, "postgresql": map[string]any{
		"use_slots": false, "parameters": map[string]any{"pg_stat_statements.max": 1000}}}
	if !reflect.DeepEqual(patch, want) {
		t.Errorf("patch = %#v\nwant %#v", patch, want)
	}
	for _, bad := range []string{"ttl", "=3", "ttl=[1"} {
		if err := setPatch(map[string]any{}, bad); err == nil {
			t.Errorf("setPatch(%q) accepted", bad)
		}
	}
}

func TestUnifiedDiffAndCells(t *testing.T) {
	d := unifiedDiff("a\nb\nc\nd\ne\nf\ng\nh\ni\n", "a\nb\nC\nd\ne\nf\ng\nh\nI\n", "before", "after")
	want := "--- before\n+++ after\n@@\n a\n b\n-c\n+C\n d\n e\n f\n g\n h\n-i\n+I\n"
	if d != want {
		t.Errorf("diff =\n%s\nwant\n%s", d, want)
	}
	d = unifiedDiff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "x\n2\n3\n4\n5\n6\n7\n8\n9\ny\n", "a", "b")
	if strings.Count(d, "@@") != 2 || strings.Contains(d, " 5\n") {
		t.Errorf("far-apart changes should make two hunks without the middle:\n%s", d)
	}
	for in, want := range map[any]string{nil: "", int64(3 << 20): "3", float64(1 << 19): "1", int64(1<<19 - 1): "0", "unknown": ""} {
		if got := lagMB(in); got != want {
			t.Errorf("lagMB(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"leader": "Leader", "sync_standby": "Sync Standby", "standby_leader": "Standby Leader", "replica": "Replica"} {
		if got := roleTitle(in); got != want {
			t.Errorf("roleTitle(%q) = %q, want %q", in, got, want)
		}
	}
}
