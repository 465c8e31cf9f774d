package fence

import (
	"strings"
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	for _, tt := range []struct {
		line, err string
		want      request
	}{
		{line: "allow 3000000000 1000000000 10000000000\n", want: request{verb: "allow", until: 3 * time.Second, acked: time.Second, ttl: 10 * time.Second}},
		{line: "status\n", want: request{verb: "status"}},
		{line: "bye", want: request{verb: "bye"}},
		{line: "", err: "empty"},
		{line: "allow 1 2\n", err: "takes <until> <acked> <ttl>"},
		{line: "allow 1 2 x\n", err: `"x" is not a positive`},
		{line: "allow -5 2 3\n", err: "not a positive"},
		{line: "allow 99999999999999999999 2 3\n", err: "not a positive"},
		{line: "status now\n", err: "takes no arguments"},
		{line: "disarm\n", err: `unknown request "disarm"`},
	} {
		got, err := parseRequest(tt.line)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseRequest(%q) = %v, %v; want an error with %q", tt.line, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRequest(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
		if back, err := parseRequest(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %+v, %v", tt.line, back, err)
		}
	}
}

func TestBootOfErrsEarly(t *testing.T) {
	until := time.Now().Add(5 * time.Second)
	b := bootOf(until)
	if d := b - bootNow(); d > 5*time.Second || d < 4*time.Second {
		t.Fatalf("bootOf(now+5s) is %s from now on the boot clock", d)
	}
}
