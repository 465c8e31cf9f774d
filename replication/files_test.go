package replication

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pgha/pgha/config"
)

// confInstance is an Instance whose data directory is dir.
func confInstance(t *testing.T, dir string) *Instance {
	t.Helper()
	cfg := config.Default().PostgreSQL
	cfg.DataDir = dir
	cfg.BinDir = testBinDir()
	cfg.Authentication.Superuser.Password = "su"
	in, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// secretFile is a file outside the data directory (root's, when the
// test runs as root) that the data directory's owner must not be able to
// get written or read through a link.
func secretFile(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte("SECRET "+name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func checkUntouched(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "SECRET " + filepath.Base(path) + "\n"; string(b) != want {
		t.Fatalf("%s was written through a link: now %q", path, b)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("%s changed mode or owner: %v uid %d", path, st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
}

// TestWriteConfigDoesNotFollowLinks: links the data directory's owner
// planted where pgha writes (postgresql.pgha.conf, pg_hba.conf,
// standby.signal, and the temporary names earlier versions wrote
// through) are replaced, never written through: the files they point at
// keep their contents, mode and owner.
func TestWriteConfigDoesNotFollowLinks(t *testing.T) {
	dir, _ := confDir(t)
	in := confInstance(t, dir)
	var secrets []string
	for _, name := range []string{pghaConf, "pg_hba.conf", standbySignal, pghaConf + ".pgha-tmp", "pg_hba.conf.pgha-tmp", standbySignal + ".pgha-tmp"} {
		s := secretFile(t, strings.ReplaceAll(name, ".", "_"))
		secrets = append(secrets, s)
		if err := os.Symlink(s, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.configureStandby(dir, Primary{Host: "127.0.0.1", Port: 5433}); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		checkUntouched(t, s)
	}
	for _, name := range []string{pghaConf, "pg_hba.conf", standbySignal} {
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !st.Mode().IsRegular() {
			t.Fatalf("%s is not a regular file now: %v %v", name, st, err)
		}
		if os.Geteuid() == 0 && st.Sys().(*syscall.Stat_t).Uid != in.user.uid {
			t.Fatalf("%s is not owned by %s", name, in.user.name)
		}
	}
}

// TestReadConfigDoesNotFollowLinks: a link at a file pgha reads and
// rewrites (postgresql.conf, postgresql.auto.conf, postgresql.pgha.conf)
// is refused, so that no file only root may read is copied into the data
// directory; a FIFO does not hang the daemon.
func TestReadConfigDoesNotFollowLinks(t *testing.T) {
	for _, name := range []string{"postgresql.conf", "postgresql.auto.conf", pghaConf} {
		t.Run(name, func(t *testing.T) {
			dir, _ := confDir(t)
			in := confInstance(t, dir)
			secret := secretFile(t, "secret")
			if err := os.WriteFile(secret, []byte("SECRET secret\nprimary_conninfo = 'x'\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, name)
			_ = os.Remove(path)
			if err := os.Symlink(secret, path); err != nil {
				t.Fatal(err)
			}
			err := in.writeConfigKeep(dir, nil, true)
			if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
				t.Fatalf("writeConfig through a link at %s: %v", name, err)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if b, err := readDataFile(filepath.Join(dir, e.Name())); err == nil && strings.Contains(string(b), "SECRET") {
					t.Fatalf("%s holds the linked file's contents:\n%s", e.Name(), b)
				}
			}
		})
	}
	t.Run("fifo", func(t *testing.T) {
		dir, _ := confDir(t)
		in := confInstance(t, dir)
		if err := syscall.Mkfifo(filepath.Join(dir, "postgresql.auto.conf"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := in.writeConfig(dir, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("writeConfig with a FIFO at postgresql.auto.conf: %v", err)
		}
	})
}

// TestMkdirOwnedRefusesLink: a link where pgha creates a directory (the
// run directory beside the data directory) is refused, not chmod'ed or
// chown'ed through.
func TestMkdirOwnedRefusesLink(t *testing.T) {
	dir, _ := confDir(t)
	in := confInstance(t, dir)
	target := t.TempDir()
	if err := os.Chmod(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "run")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := in.mkdirOwned(link, 0o755); err == nil {
		t.Fatal("mkdirOwned accepted a link")
	}
	st, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("the link's target changed: %v uid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
}

// TestMkdirParents: missing parents are made traversable (0755) whatever
// the umask; existing ones are left alone.
func TestMkdirParents(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(root, "a", "b", "data")
	if err := MkdirParents(path); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b")} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v", p, st, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("MkdirParents created %s itself: %v", path, err)
	}
	if st, _ := os.Stat(root); st.Mode().Perm() != 0o711 {
		t.Fatalf("existing %s changed to %v", root, st.Mode())
	}
}
