package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestValidateConfigCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"valid sample", []string{"../../testdata/node1.yml"}, 0, []string{"valid"}},
		{"unknown key and ttl 1", []string{"../../testdata/bad-unknown-key-ttl.yml"}, 2,
			[]string{`postgresql.lisen: unknown key (did you mean "listen"?)`, "bootstrap.dcs.ttl: 1s is too small"}},
		{"missing file", []string{"/nonexistent/pgha.yml"}, 2, []string{"cannot read config file"}},
		{"no argument", nil, 2, []string{"give exactly one config file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPgha(append([]string{"validate-config"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, errOut.String())
			}
			all := out.String() + errOut.String()
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			if strings.Contains(all, "goroutine ") || strings.Contains(all, "panic") {
				t.Errorf("output looks like a stack trace:\n%s", all)
			}
		})
	}
}

// runPgha runs the pgha command line with args and returns its exit code,
// standard output, and standard error followed by the returned error's
// text (what main would print).
func runPgha(args ...string) (code int, stdout, stderr *bytes.Buffer) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), append([]string{"pgha"}, args...), &out, &errOut); err != nil {
		code = exitCode(err)
		errOut.WriteString(err.Error())
	}
	return code, &out, &errOut
}
