package fence

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Linux watchdog ioctls (linux/watchdog.h): _IOWR('W', 6, int) and
// _IOR('W', 7, int).
const (
	wdiocSetTimeout = 0xc0045706
	wdiocGetTimeout = 0x80045707
)

// watchdogDevice is an open Linux watchdog: once opened it resets the
// machine unless it is written to within its timeout; writing 'V' before
// closing disarms it (the "magic close").
type watchdogDevice struct {
	path    string
	f       *os.File
	timeout time.Duration
}

// openWatchdog opens path and sets its timeout to at most timeout (whole
// seconds, rounded down). A device that cannot take the timeout, or sets
// a longer one, is closed again and refused: it would fire after the
// lease could expire.
func openWatchdog(path string, timeout time.Duration) (*watchdogDevice, error) {
	secs := int(timeout / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("fence: watchdog timeout %s is under 1 s: lower watchdog.safety_margin or raise ttl", timeout)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fence: open watchdog %s: %w (load a driver, e.g. modprobe softdog, or set watchdog.mode: off)", path, err)
	}
	w := &watchdogDevice{path: path, f: f}
	fd := int(f.Fd())
	if err := unix.IoctlSetPointerInt(fd, wdiocSetTimeout, secs); err != nil {
		w.close()
		return nil, fmt.Errorf("fence: watchdog %s cannot set a %d s timeout: %w", path, secs, err)
	}
	got, err := unix.IoctlGetInt(fd, wdiocGetTimeout)
	if err != nil {
		w.close()
		return nil, fmt.Errorf("fence: watchdog %s does not report its timeout: %w", path, err)
	}
	if got > secs || got <= 0 {
		w.close()
		return nil, fmt.Errorf("fence: watchdog %s took a %d s timeout for the %d s asked: it would fire after the lease can expire", path, got, secs)
	}
	w.timeout = time.Duration(got) * time.Second
	return w, nil
}

// kick restarts the device's countdown.
func (w *watchdogDevice) kick() error {
	if _, err := w.f.Write([]byte{'1'}); err != nil {
		return fmt.Errorf("fence: kick watchdog %s: %w", w.path, err)
	}
	return nil
}

// close disarms the device (magic close) and closes it.
func (w *watchdogDevice) close() {
	_, _ = w.f.Write([]byte{'V'})
	_ = w.f.Close()
}
