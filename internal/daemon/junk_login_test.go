package daemon_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
	"github.com/pgha/pgha/internal/daemon/daemontest"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testkit"
)

// junkQuietT drops the pooler's per-connection debug lines from the test log
// (10,000 of them would be most of the test's memory and time).
type junkQuietT struct{ testing.TB }

func (q junkQuietT) Log(args ...any) {
	if len(args) == 1 {
		if s, ok := args[0].(string); ok && strings.Contains(s, "level=DEBUG") && strings.Contains(s, "component=pooler") {
			return
		}
	}
	q.TB.Log(args...)
}

// TestJunkLogins sends 10,000 junk, truncated and hostile startup packets
// and logins to a running leader's pooler: random bytes, bad and huge
// lengths, truncated SSLRequests, bad protocol versions, partial SCRAM
// exchanges, wrong passwords, unknown users, a user whose password is
// empty (md5). The daemon must stay up, its HA loop keep its lease (same
// leader key, never a lost leadership), the pooler still serve a good
// login, recover from no panic, and its memory stay bounded.
func TestJunkLogins(t *testing.T) {
	pgtest.RequireUser(t)
	userlist := filepath.Join(t.TempDir(), "userlist.txt")
	if err := os.WriteFile(userlist, []byte(fmt.Sprintf("%q %q\n", pgtest.SuperUser, pgtest.SuperPassword)), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := daemontest.New(junkQuietT{t}, 1, daemontest.Options{Edit: func(i int, c *config.Config) {
		p := config.DefaultPooler()
		p.Enabled = true
		p.Listen = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		p.AuthType = "md5"
		p.AuthFile = userlist
		// A role without a password gives an empty secret: the md5 login
		// that used to panic the daemon.
		p.AuthUser = pgtest.SuperUser
		p.AuthQuery = "SELECT usename, coalesce(passwd, '') FROM pg_shadow WHERE usename = $1"
		p.ClientLoginTimeout = config.Duration(5 * time.Second)
		p.QueryWaitTimeout = config.Duration(30 * time.Second)
		c.Pooler = p
		c.PostgreSQL.PgHBA = append(c.PostgreSQL.PgHBA, "host all all 127.0.0.1/32 scram-sha-256")
	}})
	n := tc.Nodes[0]
	n.Start(func(d *daemon.Daemon) error { return d.AddComponents("") })
	tc.WaitHealthy(2*time.Minute, n.Name)
	n.PG.Exec(t, "CREATE ROLE nopw LOGIN")
	n.PG.Exec(t, "CREATE ROLE app_scram LOGIN PASSWORD 'right'")
	addr := n.Config.Pooler.Listen
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	goodLogin := func() error {
		c, err := pgx.Connect(ctx, poolerDSN(addr))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		var one int
		return c.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	testkit.Eventually(t, 30*time.Second, "a good login through the pooler", goodLogin)

	v0, ok := n.D.View()
	if !ok || v0.Leader != n.Name || !n.D.LoopInfo().IsLeader {
		t.Fatalf("before: leader %q (view ok %v), is leader %v", v0.Leader, ok, n.D.LoopInfo().IsLeader)
	}
	heap0 := junkHeap()

	// Watch the loop's leadership while the junk flies.
	var lost atomic.Int64
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	d := n.D
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
				if !d.LoopInfo().IsLeader {
					lost.Add(1)
				}
			}
		}
	}()

	const total, workers = 10000, 32
	start := time.Now()
	var next, answered atomic.Int64
	kinds := make([]atomic.Int64, len(junkKinds))
	var senders sync.WaitGroup
	for w := 0; w < workers; w++ {
		senders.Add(1)
		go func() {
			defer senders.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				k := int(i) % len(junkKinds)
				kinds[k].Add(1)
				if junkOnce(addr, junkKinds[k], rng) {
					answered.Add(1)
				}
			}
		}()
	}
	// Wait for the senders (bounded: each connection has a 3 s deadline).
	sendersDone := make(chan struct{})
	go func() {
		senders.Wait()
		close(sendersDone)
	}()
	select {
	case <-sendersDone:
	case <-time.After(2 * time.Minute):
		t.Fatalf("junk not sent within 2 min: %d of %d", next.Load(), total)
	}
	elapsed := time.Since(start)
	close(stopWatch)
	wg.Wait()
	t.Logf("%d junk connections in %v (%d got an answer from the pooler)", total, elapsed.Round(time.Millisecond), answered.Load())

	if err := goodLogin(); err != nil {
		t.Fatalf("after the junk: a good login fails: %v", err)
	}
	if lost.Load() != 0 {
		t.Errorf("the HA loop was not leader in %d samples during the junk", lost.Load())
	}
	info := n.D.LoopInfo()
	v1, ok := n.D.View()
	if !ok || !info.IsLeader || v1.Leader != n.Name || v1.LeaderRevision != v0.LeaderRevision {
		t.Errorf("after: leader %q rev %d (before %q rev %d), is leader %v: the lease was lost",
			v1.Leader, v1.LeaderRevision, v0.Leader, v0.LeaderRevision, info.IsLeader)
	}
	if v := tc.View(); v.Leader != n.Name || v.LeaderRevision != v0.LeaderRevision {
		t.Errorf("etcd: leader %q rev %d, want %q rev %d", v.Leader, v.LeaderRevision, n.Name, v0.LeaderRevision)
	}
	if time.Since(info.LastLoop) > 5*time.Second {
		t.Errorf("the HA loop's last cycle was %v ago", time.Since(info.LastLoop))
	}
	_, body, err := httpDo("GET", "http://"+n.Config.RESTAPI.Listen+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^pgha_pooler_panics_total (\S+)$`).FindStringSubmatch(body); m == nil || m[1] != "0" {
		t.Errorf("pgha_pooler_panics_total: %v", m)
	}
	// Memory: the junk leaves nothing behind (pending logins all ended).
	var heap1 uint64
	testkit.Eventually(t, 30*time.Second, "pending logins ended and heap back", func() error {
		if m := regexp.MustCompile(`(?m)^pgha_pooler_pending_logins (\S+)$`).FindStringSubmatch(junkMetrics(t, n)); m == nil || m[1] != "0" {
			return fmt.Errorf("pending logins %v", m)
		}
		heap1 = junkHeap()
		if heap1 > heap0+64<<20 {
			return fmt.Errorf("heap in use %d MiB, before %d MiB", heap1>>20, heap0>>20)
		}
		return nil
	})
	t.Logf("heap in use: %d MiB before, %d MiB after", heap0>>20, heap1>>20)
	for k := range kinds {
		if kinds[k].Load() == 0 {
			t.Errorf("junk kind %d never sent", k)
		}
	}
}

func junkMetrics(t *testing.T, n *daemontest.Node) string {
	_, body, err := httpDo("GET", "http://"+n.Config.RESTAPI.Listen+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func junkHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// junkKind is one way of sending a bad login: it writes to c and may read
// its answers.
type junkKind func(c net.Conn, rng *rand.Rand) error

// junkOnce runs one junk connection (3 s at most); it reports whether the
// pooler answered anything.
func junkOnce(addr string, k junkKind, rng *rand.Rand) bool {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := k(c, rng); err != nil {
		return false
	}
	// Nothing more comes from this client (a truncated packet stays
	// truncated): read what the pooler says until it closes.
	c.(*net.TCPConn).CloseWrite()
	var buf [512]byte
	got := false
	for {
		n, err := c.Read(buf[:])
		got = got || n > 0
		if err != nil {
			return got
		}
	}
}

func junkStartup(version uint32, params ...string) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[4:], version)
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func junkMsg(t byte, body []byte) []byte {
	b := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

// readAuth reads messages until an authentication request and returns
// its code (-1 on an error or another answer).
func junkReadAuth(c net.Conn) int {
	var h [5]byte
	for {
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return -1
		}
		n := int(binary.BigEndian.Uint32(h[1:])) - 4
		if n < 0 || n > 1<<16 {
			return -1
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			return -1
		}
		if h[0] == 'R' && n >= 4 {
			return int(binary.BigEndian.Uint32(b))
		}
		if h[0] == 'E' {
			return -1
		}
	}
}

func junkSend(c net.Conn, bs ...[]byte) error {
	for _, b := range bs {
		if _, err := c.Write(b); err != nil {
			return err
		}
	}
	return nil
}

const junkProtoV3 = 196608

var errJunkNoChallenge = errors.New("no challenge")

// login sends a startup for user and waits for the challenge.
func junkLogin(c net.Conn, user string) (int, error) {
	if err := junkSend(c, junkStartup(junkProtoV3, "user", user, "database", "postgres")); err != nil {
		return 0, err
	}
	code := junkReadAuth(c)
	if code < 0 {
		return 0, errJunkNoChallenge
	}
	return code, nil
}

var junkMD5 = junkMsg('p', []byte("md5"+strings.Repeat("0", 32)+"\x00"))

var junkKinds = []junkKind{
	// random bytes
	func(c net.Conn, rng *rand.Rand) error {
		b := make([]byte, 1+rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return junkSend(c, b)
	},
	// bad lengths: negative, below 8, zero
	func(c net.Conn, rng *rand.Rand) error {
		l := []uint32{0xffffffff, 0x80000000, 0, 4, 7}[rng.IntN(5)]
		b := binary.BigEndian.AppendUint32(nil, l)
		return junkSend(c, binary.BigEndian.AppendUint32(b, junkProtoV3))
	},
	// huge length, then a trickle
	func(c net.Conn, rng *rand.Rand) error {
		b := binary.BigEndian.AppendUint32(nil, 0x7fffffff-uint32(rng.IntN(1000)))
		return junkSend(c, binary.BigEndian.AppendUint32(b, junkProtoV3), []byte("user\x00"))
	},
	// truncated SSLRequest
	func(c net.Conn, rng *rand.Rand) error {
		ssl := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
		return junkSend(c, ssl[:1+rng.IntN(7)])
	},
	// SSLRequest, then junk after the 'N'
	func(c net.Conn, rng *rand.Rand) error {
		if err := junkSend(c, []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
			return err
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		return junkSend(c, []byte{0, 0, 0, 9, 1, 2, 3, 4, 5})
	},
	// bad protocol versions
	func(c net.Conn, rng *rand.Rand) error {
		v := []uint32{2 << 16, 4 << 16, 1234<<16 | 5678, 0, 0xffffffff}[rng.IntN(5)]
		return junkSend(c, junkStartup(v, "user", pgtest.SuperUser))
	},
	// a startup packet that claims more than it sends
	func(c net.Conn, rng *rand.Rand) error {
		b := junkStartup(junkProtoV3, "user", pgtest.SuperUser, "database", "postgres")
		binary.BigEndian.PutUint32(b, uint32(len(b)+100+rng.IntN(5000)))
		return junkSend(c, b)
	},
	// unterminated parameters, no user
	func(c net.Conn, rng *rand.Rand) error {
		b := junkStartup(junkProtoV3, "user", "x")
		b = b[:len(b)-2]
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		if rng.IntN(2) == 0 {
			b = junkStartup(junkProtoV3, "database", "postgres")
		}
		return junkSend(c, b)
	},
	// wrong md5 password for a known user
	func(c net.Conn, rng *rand.Rand) error {
		if _, err := junkLogin(c, pgtest.SuperUser); err != nil {
			return err
		}
		return junkSend(c, junkMD5)
	},
	// the user whose password is empty
	func(c net.Conn, rng *rand.Rand) error {
		if _, err := junkLogin(c, "nopw"); err != nil {
			return err
		}
		return junkSend(c, []byte{'p', 0, 0, 0, 5, 0})
	},
	// unknown users (a few names, so the auth_query cache is used)
	func(c net.Conn, rng *rand.Rand) error {
		if _, err := junkLogin(c, "ghost"+strconv.Itoa(rng.IntN(20))); err != nil {
			return err
		}
		return junkSend(c, junkMD5)
	},
	// a partial SCRAM exchange (the SCRAM user gets SCRAM under md5)
	func(c net.Conn, rng *rand.Rand) error {
		code, err := junkLogin(c, "app_scram")
		if err != nil || code != 10 {
			return err
		}
		first := "n,,n=,r=" + strconv.Itoa(rng.IntN(1e9))
		b := append([]byte("SCRAM-SHA-256\x00"), binary.BigEndian.AppendUint32(nil, uint32(len(first)))...)
		init := junkMsg('p', append(b, first...))
		switch rng.IntN(4) {
		case 0:
			return junkSend(c, init[:rng.IntN(len(init))])
		case 1:
			return junkSend(c, init)
		case 2:
			if err := junkSend(c, init); err != nil {
				return err
			}
			if junkReadAuth(c) != 11 {
				return errJunkNoChallenge
			}
			return junkSend(c, junkMsg('p', []byte("c=biws,r=wrong,p=AAAA")))
		default:
			return junkSend(c, junkMsg('p', []byte("SCRAM-SHA-256\x00\x7f\xff\xff\xffxx")))
		}
	},
	// a full SCRAM exchange with a wrong proof
	func(c net.Conn, rng *rand.Rand) error {
		if code, err := junkLogin(c, "app_scram"); err != nil || code != 10 {
			return err
		}
		first := "n,,n=,r=abc"
		b := append([]byte("SCRAM-SHA-256\x00"), binary.BigEndian.AppendUint32(nil, uint32(len(first)))...)
		if err := junkSend(c, junkMsg('p', append(b, first...))); err != nil {
			return err
		}
		var h [5]byte
		if _, err := io.ReadFull(c, h[:]); err != nil || h[0] != 'R' {
			return errJunkNoChallenge
		}
		body := make([]byte, int(binary.BigEndian.Uint32(h[1:]))-4)
		if _, err := io.ReadFull(c, body); err != nil || len(body) < 4 {
			return errJunkNoChallenge
		}
		var r string
		for _, f := range strings.Split(string(body[4:]), ",") {
			if strings.HasPrefix(f, "r=") {
				r = f[2:]
			}
		}
		return junkSend(c, junkMsg('p', []byte("c=biws,r="+r+",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")))
	},
	// a password message with a huge length, or another type
	func(c net.Conn, rng *rand.Rand) error {
		if _, err := junkLogin(c, pgtest.SuperUser); err != nil {
			return err
		}
		if rng.IntN(2) == 0 {
			return junkSend(c, []byte{'p', 0x7f, 0xff, 0xff, 0xff, 1, 2, 3})
		}
		return junkSend(c, junkMsg('Q', []byte("SELECT 1\x00")))
	},
	// a cancel request with a made-up key
	func(c net.Conn, rng *rand.Rand) error {
		b := []byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e}
		b = binary.BigEndian.AppendUint32(b, rng.Uint32())
		return junkSend(c, binary.BigEndian.AppendUint32(b, rng.Uint32()))
	},
}
