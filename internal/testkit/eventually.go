package testkit

import (
	"context"
	"errors"
	"time"
)

// T is the part of testing.TB the toolkit uses (*testing.T, *testing.B
// and testing.TB satisfy it).
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
	Name() string
}

// Eventually calls f until it returns nil, for at most timeout, and
// fails the test otherwise, naming what was awaited and f's last error
// (what is still missing). It polls at 10 ms first, backing off to
// 200 ms, so a condition that holds soon is seen soon without spinning.
func Eventually(t T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := Poll(context.Background(), timeout, f); err != nil {
		t.Fatalf("%s: not reached after %s: %v", what, timeout, err)
	}
}

// Poll calls f until it returns nil, timeout passes or ctx ends, and
// returns f's last error in the two latter cases (for helpers that
// report a failure their own way).
func Poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// Missing is f's answer for a condition given as a bool: nil when ok,
// else an error saying what is missing.
func Missing(ok bool, what string) error {
	if ok {
		return nil
	}
	return errors.New(what)
}

// Ctx returns a context that ends after timeout or when the test ends,
// whichever comes first.
func Ctx(t T, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}
