package replication

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Files the daemon (often root) writes or reads in directories that
// belong to os_user (the data directory, the run directory): os_user
// could have put a symbolic link, a FIFO or a directory there. Nothing
// here follows a link at the last path component: writes go to a new
// file created with O_EXCL|O_NOFOLLOW and renamed over the target (which
// replaces a link instead of writing through it); reads refuse links and
// anything but a regular file; chmod and chown act on an open
// descriptor, not on a name that could be swapped for a link.

// maxConfigFile bounds what readDataFile reads: configuration files are
// small, and a huge file must not exhaust the daemon's memory.
const maxConfigFile = 16 << 20

// writeFile writes data to path atomically (a new temp file, then a
// rename) with mode, owned by os_user.
func (in *Instance) writeFile(path string, data []byte, mode os.FileMode) error {
	dir, base := filepath.Split(path)
	var f *os.File
	var tmp string
	for range 10 {
		tmp = filepath.Join(dir, "."+base+".pgha-"+randomHex())
		var err error
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("replication: write %s: %w", path, err)
		}
		break
	}
	if f == nil {
		return fmt.Errorf("replication: write %s: no free temporary name beside it", path)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("replication: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil { // the umask narrowed it
		return fail(err)
	}
	if err := in.fchown(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replication: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replication: write %s: %w", path, err)
	}
	return nil
}

// readDataFile reads a configuration file in a directory os_user owns.
// It does not follow a symbolic link (which could point at a file only
// root may read, whose contents would then be copied into a file os_user
// reads) and refuses anything but a regular file of at most
// maxConfigFile bytes. A missing file is fs.ErrNotExist.
func readDataFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("replication: %s is a symbolic link: pgha does not follow links in the data directory; replace it with the file itself", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("replication: %s is not a regular file (%s): move it away", path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("replication: %s is larger than %d bytes: not a configuration file pgha reads", path, maxConfigFile)
	}
	return b, nil
}

// fchown gives an open file to os_user when this process is root.
func (in *Instance) fchown(f *os.File) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := f.Chown(int(in.user.uid), int(in.user.gid)); err != nil {
		return fmt.Errorf("chown to %s: %w", in.user.name, err)
	}
	return nil
}

// mkdirOwned creates dir with mode (missing parents root-owned and
// traversable, MkdirParents) and gives dir itself to os_user. An
// existing dir must be a directory, not a link to one.
func (in *Instance) mkdirOwned(dir string, mode os.FileMode) error {
	if err := MkdirParents(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("replication: create %s: %w", dir, err)
	}
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("replication: %s is not a directory (a symbolic link or a file): move it away", dir)
		}
		return fmt.Errorf("replication: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Chmod(mode); err != nil {
		return fmt.Errorf("replication: chmod %s: %w", dir, err)
	}
	if err := in.fchown(d); err != nil {
		return fmt.Errorf("replication: %s: %w", dir, err)
	}
	return nil
}

// MkdirParents creates the missing parent directories of path with mode
// 0755 whatever the umask, so that the OS user Postgres runs as can
// traverse them to reach path (a data directory, or a sibling of one).
// Existing directories are left as they are.
func MkdirParents(path string) error {
	parent := filepath.Dir(filepath.Clean(path))
	var missing []string
	for p := parent; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replication: %s: %w", p, err)
		}
		missing = append(missing, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(p, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // made meanwhile by someone else: theirs
			}
			return fmt.Errorf("replication: create %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("replication: chmod %s: %w", p, err)
		}
	}
	return nil
}
