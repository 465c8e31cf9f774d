package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateConfigOpenWrites: validate-config refuses a REST API that
// listens beyond loopback without authentication, naming the key and the
// ways out; the explicit opt-out makes the same file valid.
func TestValidateConfigOpenWrites(t *testing.T) {
	sample, err := os.ReadFile("../../testdata/node1.yml")
	if err != nil {
		t.Fatal(err)
	}
	open := strings.Replace(string(sample), "  listen: 127.0.0.1:8008\n  connect_address: 127.0.0.1:8008\n",
		"  listen: 0.0.0.0:8008\n  connect_address: 10.0.0.5:8008\n", 1)
	if open == string(sample) {
		t.Fatal("testdata/node1.yml no longer has the restapi lines this test rewrites")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name, yaml string
		wantCode   int
		want       []string
	}{
		{"open writes", open, 2, []string{"restapi.authentication: missing while restapi.listen 0.0.0.0:8008 accepts connections from other machines",
			"restapi.authentication.username", "restapi.allow_unauthenticated_writes: true"}},
		{"opt-out", strings.Replace(open, "restapi:\n", "restapi:\n  allow_unauthenticated_writes: true\n", 1), 0, []string{"valid"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runPgha("validate-config", path)
			all := out.String() + errOut.String()
			if code != c.wantCode {
				t.Fatalf("exit code %d, want %d:\n%s", code, c.wantCode, all)
			}
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}
