package replication

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/config"
)

// Values that break naive quoting: quotes, backslashes (also before a
// quote and at the end), escapes spelled out, line breaks, a comment
// sign, an equals sign, non-ASCII, control characters.
var nasty = []string{
	"plain", "", "it's", `back\slash`, `trailing\`, `\'`, `''`, `a\nb (spelled out)`, "line1\nline2", "cr\rtab\t",
	"# not a comment", "x = y", "zé ünïcödé", "bell\x07del\x7f", `"double"`, ` leading and trailing `,
	`pass'word\" with\\ all`,
}

// testBinDir is where the tests find postgres.
func testBinDir() string {
	if d := os.Getenv("PGHA_TEST_BIN_DIR"); d != "" {
		return d
	}
	return config.DefaultBinDir
}

// confDir makes a directory the postgres OS user can read, holding an
// empty postgresql.conf (what `postgres -C` needs).
func confDir(t *testing.T) (string, osUser) {
	t.Helper()
	u, err := lookupOSUser("postgres")
	if err != nil {
		t.Fatalf("%v (install postgresql-15: scripts/install-deps.sh)", err)
	}
	if err := checkCanRunAs(u); err != nil {
		t.Fatalf("tests run postgres -C: %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "pgha-conf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "postgresql.conf"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{dir, filepath.Join(dir, "postgresql.conf")} {
			if err := os.Chown(p, int(u.uid), int(u.gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir, u
}

// show is `postgres -D dir -C name`: the value as Postgres read it.
func show(t *testing.T, u osUser, dir, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := run(ctx, commandAs(ctx, u, filepath.Join(testBinDir(), "postgres"), "-D", dir, "-C", name), "postgres -C "+name)
	if err != nil {
		t.Fatalf("%v\nfile:\n%s", err, readOr(filepath.Join(dir, pghaConf)))
	}
	return strings.TrimSuffix(out, "\n")
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestQuoteParamRoundTrip: every value quoteParam writes reads back from
// postgresql.conf as itself, through Postgres's own parser.
func TestQuoteParamRoundTrip(t *testing.T) {
	dir, u := confDir(t)
	for _, v := range nasty {
		q, err := quoteParam(v)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "postgresql.conf"), []byte("log_line_prefix = "+q+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := show(t, u, dir, "log_line_prefix"); got != v {
			t.Errorf("wrote %q as %s, Postgres read %q", v, q, got)
		}
	}
	if _, err := quoteParam("nul\x00byte"); err == nil {
		t.Error("a NUL byte was quoted")
	}
}

// TestConninfoRoundTrip: primary_conninfo built from nasty member names,
// role names and passwords comes out of postgresql.pgha.conf, through
// Postgres's file parser and then a libpq-compatible conninfo parser
// (pgconn), with every value intact; synchronous_standby_names built from
// nasty member names is accepted by Postgres's check of that setting and
// reads back as written.
func TestConninfoRoundTrip(t *testing.T) {
	dir, u := confDir(t)
	for i, v := range nasty {
		if v == "" {
			continue
		}
		member := nasty[(i+3)%len(nasty)]
		if member == "" {
			member = "m"
		}
		cfg := config.Default().PostgreSQL
		cfg.DataDir = dir
		cfg.BinDir = testBinDir()
		cfg.Authentication.Superuser.Password = "su"
		// Role names go into pg_hba.conf too, which has no place for a
		// control character (writeHBA refuses them).
		user := "repl " + strings.Map(func(r rune) rune {
			if isControl(r) {
				return -1
			}
			return r
		}, v)
		cfg.Authentication.Replication = config.Credentials{Username: user, Password: v}
		in, err := New(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		in.SetApplicationName(member)
		if err := in.writeConfig(dir, &Primary{Host: "127.0.0.1", Port: 5433, Slot: "slot_1"}); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		ci := show(t, u, dir, "primary_conninfo")
		pc, err := pgconn.ParseConfig(ci)
		if err != nil {
			t.Fatalf("password %q: pgconn cannot parse %q: %v", v, ci, err)
		}
		if pc.Password != v || pc.User != user || pc.Host != "127.0.0.1" || pc.Port != 5433 || pc.RuntimeParams["application_name"] != member {
			t.Errorf("password %q, member %q: conninfo %q parsed as user %q password %q host %s port %d application_name %q",
				v, member, ci, pc.User, pc.Password, pc.Host, pc.Port, pc.RuntimeParams["application_name"])
		}
		if got := show(t, u, dir, "primary_slot_name"); got != "slot_1" {
			t.Errorf("primary_slot_name = %q", got)
		}

		// The primary's side: synchronous_standby_names.
		if strings.ContainsAny(v, "\x00") {
			continue
		}
		in.sync = []string{v, member}
		if err := in.writeConfig(dir, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := show(t, u, dir, "synchronous_standby_names"), syncNames(in.sync); got != want {
			t.Errorf("synchronous_standby_names for %q: Postgres read %q, want %q", in.sync, got, want)
		}
	}
}
