package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PortDir holds the reservation files of the ports handed out: one file
// per port, shared by every test binary on the machine (root's and the
// postgres user's), so two tests never get the same port.
const PortDir = "/tmp/pgtest-ports"

// FreePort returns a TCP port on 127.0.0.1 that is free and reserved for
// this test until its cleanup. Ports come from below the kernel's
// ephemeral range (so no outgoing connection and no bind to port 0 takes
// them before the server binds), and every test binary on the machine
// coordinates through reservation files in PortDir.
func FreePort(t T) int {
	t.Helper()
	lo, hi := portRange()
	if lo > 0 {
		if err := os.MkdirAll(PortDir, 0o755); err == nil {
			_ = os.Chmod(PortDir, 0o777|os.ModeSticky) // shared by root and postgres test runs
			for i := 0; i < 200; i++ {
				p := lo + rand.IntN(hi-lo)
				if reservePort(t, p) {
					return p
				}
			}
		}
	}
	// Fallback: let the kernel choose.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr is FreePort as 127.0.0.1:port.
func FreeAddr(t T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// portRange is [10000, start of the ephemeral range), or 0,0 when that
// range is too small to pick from.
func portRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < 12000 {
		return 0, 0
	}
	return 10000, low
}

// reservePort claims p with an exclusive file (a file older than an hour
// is a leftover of a killed run and is taken over) and checks that p can
// be bound now.
func reservePort(t T, p int) bool {
	path := filepath.Join(PortDir, strconv.Itoa(p))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		st, serr := os.Stat(path)
		if serr != nil || time.Since(st.ModTime()) < time.Hour {
			return false
		}
		_ = os.Remove(path)
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err != nil {
			return false
		}
	}
	fmt.Fprintf(f, "%d %s\n", os.Getpid(), t.Name())
	_ = f.Close()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		_ = os.Remove(path)
		return false
	}
	_ = l.Close()
	t.Cleanup(func() { _ = os.Remove(path) })
	return true
}
