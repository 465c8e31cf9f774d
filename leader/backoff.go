package leader

import (
	"fmt"
	"time"
)

// failures remembers the action that keeps failing, so the loop neither
// retries it in a tight loop (each failure can itself wake the loop: a
// cancelled initialize key is a watch event) nor logs the same error
// thousands of times. It belongs to the loop goroutine.
type failures struct {
	kind  Kind
	count int
	// until: the same action is not tried again before this.
	until time.Time
	// msg is the last error logged, logged when it was, and repeats how
	// many identical errors were not logged since.
	msg     string
	logged  time.Time
	repeats int
}

// failLogEvery is how often an identical repeated error is logged again
// (with the count of repeats in between).
const failLogEvery = 30 * time.Second

// backoff is how long to wait before trying a failing action again:
// loop_wait after the first failure, doubling with each further one, at
// most ten loop_waits.
func backoff(loopWait time.Duration, count int) time.Duration {
	if loopWait <= 0 {
		loopWait = time.Second
	}
	d := loopWait
	for i := 1; i < count && d < 10*loopWait; i++ {
		d *= 2
	}
	return min(d, 10*loopWait)
}

// holds reports whether action a must wait: it is the failing one and
// its backoff has not passed. Fencing never waits.
func (f failures) holds(a Action, now time.Time) bool {
	return a.Kind == f.kind && a.Kind != Fence && now.Before(f.until)
}

// record notes the outcome of action a at now and returns whether err
// should be logged and, if so, how many identical errors it stands for.
// A success of the failing action (or any other action) clears it.
func (f *failures) record(a Action, err error, now time.Time, loopWait time.Duration) (log bool, repeats int) {
	if err == nil {
		if a.Kind != Nothing && a.Kind != Keep || a.Kind == f.kind {
			*f = failures{}
		}
		return false, 0
	}
	if a.Kind != f.kind {
		*f = failures{kind: a.Kind}
	}
	f.count++
	f.until = now.Add(backoff(loopWait, f.count))
	msg := err.Error()
	if msg == f.msg && now.Sub(f.logged) < failLogEvery {
		f.repeats++
		return false, 0
	}
	repeats, f.repeats = f.repeats, 0
	f.msg, f.logged = msg, now
	return true, repeats
}

// String says what failed and when it is tried again, as seen at now.
func (f failures) String(now time.Time) string {
	return fmt.Sprintf("%s failed %d times; next try in %s", f.kind, f.count, f.until.Sub(now).Round(time.Millisecond))
}
