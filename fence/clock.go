package fence

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootNow reads CLOCK_BOOTTIME: one clock for every process of the host,
// never set back or forward with the wall clock, and still counting
// through a suspend.
func bootNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// Linux has had CLOCK_BOOTTIME since 2.6.39; fall back to the
		// monotonic clock rather than fail open.
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	}
	return time.Duration(ts.Nano())
}

// bootOf converts t to CLOCK_BOOTTIME. It reads the boot clock before it
// measures how far away t is, so a pause between the two readings makes
// the result earlier (safer for a deadline), never later.
func bootOf(t time.Time) time.Duration {
	now := bootNow()
	return now + time.Until(t)
}
