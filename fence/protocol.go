package fence

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The keeper speaks one line per request and one line per answer over
// its Unix socket:
//
//	allow <until> <acked> <ttl>   writes are allowed until <until>; the lease
//	                              keepalive behind it was sent at <acked>;
//	                              the lease ttl is <ttl> (nanoseconds, the
//	                              two instants on CLOCK_BOOTTIME)
//	status                        the keeper's state
//	bye                           the daemon stopped cleanly: exit when
//	                              Postgres takes no writes
//
// Answers are "ok[ <details>]" or "err <message>".

// maxLine bounds a request line.
const maxLine = 256

type request struct {
	verb              string
	until, acked, ttl time.Duration
}

func parseRequest(line string) (request, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return request{}, fmt.Errorf("fence: empty request")
	}
	r := request{verb: f[0]}
	switch r.verb {
	case "status", "bye":
		if len(f) != 1 {
			return request{}, fmt.Errorf("fence: %s takes no arguments", r.verb)
		}
	case "allow":
		if len(f) != 4 {
			return request{}, fmt.Errorf("fence: allow takes <until> <acked> <ttl>, got %d arguments", len(f)-1)
		}
		var n [3]int64
		for i := range n {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil || v <= 0 {
				return request{}, fmt.Errorf("fence: allow: %q is not a positive number of nanoseconds", f[i+1])
			}
			n[i] = v
		}
		r.until, r.acked, r.ttl = time.Duration(n[0]), time.Duration(n[1]), time.Duration(n[2])
	default:
		return request{}, fmt.Errorf("fence: unknown request %q (allow, status, bye)", r.verb)
	}
	return r, nil
}

func (r request) String() string {
	if r.verb == "allow" {
		return fmt.Sprintf("allow %d %d %d", int64(r.until), int64(r.acked), int64(r.ttl))
	}
	return r.verb
}
