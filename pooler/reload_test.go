package pooler

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestReload: a reload reads the user list again (from a new auth_file
// too) and takes new hba rules; a bad file keeps the old list; the other
// changed keys are reported for a restart.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := config.DefaultPooler()
	cfg.AuthFile = write("a.txt", "\"alice\" \"pw\"\n")
	p, err := New(cfg, NewStaticRouter(""), pgtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	has := func(user string) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		_, ok := p.users[user]
		return ok
	}
	next := cfg
	next.AuthFile = write("b.txt", "\"bob\" \"pw\"\n")
	next.HBA = []string{"host all bob 127.0.0.1/32 scram-sha-256"}
	next.DefaultPoolSize = cfg.DefaultPoolSize + 5
	restart, err := p.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if !has("bob") || has("alice") {
		t.Fatal("the reload did not read the new auth_file")
	}
	if !slices.Equal(restart, []string{"pooler.default_pool_size"}) {
		t.Fatalf("needs restart %v, want only pooler.default_pool_size", restart)
	}
	p.mu.Lock()
	rules := len(p.hba)
	p.mu.Unlock()
	if rules != 1 {
		t.Fatalf("%d hba rules after the reload, want 1", rules)
	}
	bad := next
	bad.AuthFile = write("bad.txt", "\"carol\" \"\"\n")
	if _, err := p.Reload(bad); err == nil {
		t.Fatal("an auth_file with an empty password was taken")
	}
	if !has("bob") {
		t.Fatal("a failed reload lost the users it had")
	}
}
