package pooler

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
)

// Tests of what a client meets before it has logged in, against a pooler
// with no Postgres behind it (its router names a closed port): nothing
// here needs a server.

// startBare runs a pooler with users from userlist (file body) until the
// test ends; hooks, when set, installs test hooks before Run.
func startBare(t *testing.T, userlist string, mod func(*config.Pooler), hooks func(*Pooler)) *Pooler {
	t.Helper()
	cfg := config.DefaultPooler()
	cfg.Listen = "127.0.0.1:0"
	cfg.QueryWaitTimeout = config.Duration(time.Second)
	cfg.ServerConnectTimeout = config.Duration(time.Second)
	if userlist != "" {
		cfg.AuthFile = filepath.Join(t.TempDir(), "userlist.txt")
		if err := os.WriteFile(cfg.AuthFile, []byte(userlist), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg, NewStaticRouter("127.0.0.1:1"), pgtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if hooks != nil {
		hooks(p)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("pooler Run did not return within 10s of cancel")
		}
	})
	return p
}

// wireConn is a raw client connection for driving the login by hand.
type wireConn struct {
	t *testing.T
	net.Conn
}

func dialWire(t *testing.T, addr string) *wireConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &wireConn{t: t, Conn: c}
}

func (w *wireConn) send(b []byte) {
	w.t.Helper()
	if _, err := w.Write(b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *wireConn) startup(user, db string) {
	w.send(startupPacket(protocolV3, []byte("user\x00"+user+"\x00database\x00"+db+"\x00\x00")))
}

// next reads one message; it fails the test on a read error.
func (w *wireConn) next() (byte, []byte) {
	w.t.Helper()
	t, b, err := readWireMsg(w)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return t, b
}

func readWireMsg(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(h[1:])) - 4
	if n < 0 || n > 1<<20 {
		return 0, nil, fmt.Errorf("length %d", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return h[0], b, err
}

// wantError reads until an ErrorResponse and returns its SQLSTATE and
// message.
func (w *wireConn) wantError() (string, string) {
	w.t.Helper()
	for {
		t, b := w.next()
		if t == 'E' {
			e := parseErrorFields(b)
			return e.Code, e.Message
		}
		if t == 'R' && len(b) >= 4 && binary.BigEndian.Uint32(b) == 0 {
			w.t.Fatal("login succeeded, want an error")
		}
	}
}

// auth reads an Authentication request and returns its code and data.
func (w *wireConn) auth() (uint32, []byte) {
	w.t.Helper()
	t, b := w.next()
	if t != 'R' || len(b) < 4 {
		w.t.Fatalf("want an authentication request, got %q %q", t, b)
	}
	return binary.BigEndian.Uint32(b), b[4:]
}

func TestUserlistEmptyPassword(t *testing.T) {
	_, err := parseUserlist(strings.NewReader("\"alice\" \"pw\"\n\"bob\" \"\"\n"), "/etc/pgha/userlist.txt")
	if err == nil {
		t.Fatal("an empty password was accepted")
	}
	for _, want := range []string{"/etc/pgha/userlist.txt", "line 2", `"bob"`, "empty password", "remove the line"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "userlist.txt")
	os.WriteFile(f, []byte("\"bob\" \"\"\n"), 0o600)
	cfg := config.DefaultPooler()
	cfg.AuthFile = f
	if _, err := New(cfg, NewStaticRouter(""), pgtest.Logger(t)); err == nil || !strings.Contains(err.Error(), "empty password") {
		t.Fatalf("New with an empty password in auth_file: %v", err)
	}
	if got := md5Response("", []byte{1, 2, 3, 4}); got == "" || strings.HasPrefix(got, "md5") {
		t.Fatalf("md5Response of an empty secret = %q", got)
	}
}

// TestEmptySecretMD5: a user whose secret is empty (auth_user without a
// password, or an auth_query answer ”) is refused with 28P01 under md5;
// this used to panic the daemon.
func TestEmptySecretMD5(t *testing.T) {
	p := startBare(t, "", func(c *config.Pooler) { c.AuthType = "md5" }, nil)
	if err := p.SetAuthUser("nopw", ""); err != nil {
		t.Fatal(err)
	}
	w := dialWire(t, p.Addr())
	w.startup("nopw", "postgres")
	if code, _ := w.auth(); code != 5 {
		t.Fatalf("want an md5 challenge, got auth code %d", code)
	}
	w.send(msg('p', []byte("md5"+strings.Repeat("0", 32)+"\x00")))
	if code, m := w.wantError(); code != codeInvalidPassword || m != `password authentication failed for user "nopw"` {
		t.Fatalf("got %s %q", code, m)
	}
	if n := p.panicCount.Load(); n != 0 {
		t.Fatalf("%d panics", n)
	}
}

// TestLoginPanicRecovered: a panic in one connection's login closes that
// connection, is counted in pgha_pooler_panics_total, and the pooler goes
// on serving.
func TestLoginPanicRecovered(t *testing.T) {
	var boom atomic.Bool
	boom.Store(true)
	p := startBare(t, "\"u\" \"pw\"\n", nil, func(p *Pooler) {
		p.hooks.login = func() {
			if boom.Load() {
				panic("test: boom in login")
			}
		}
	})
	w := dialWire(t, p.Addr())
	w.startup("u", "postgres")
	if _, _, err := readWireMsg(w); err == nil {
		t.Fatal("the panicked connection answered")
	}
	waitUntil(t, 5*time.Second, "the panic counted", func() bool { return metricValue(t, p, "pgha_pooler_panics_total") == 1 })
	boom.Store(false)
	w = dialWire(t, p.Addr())
	w.startup("u", "postgres")
	if code, _ := w.auth(); code != 10 {
		t.Fatalf("after the panic: want a SCRAM challenge, got %d", code)
	}
	if n := p.pending.Load(); n != 1 {
		t.Fatalf("pending logins %d, want 1 (the panicked one released its slot)", n)
	}
}

// TestClientLoginTimeout: a client that sends nothing is closed after
// client_login_timeout.
func TestClientLoginTimeout(t *testing.T) {
	p := startBare(t, "", func(c *config.Pooler) { c.ClientLoginTimeout = config.Duration(300 * time.Millisecond) }, nil)
	w := dialWire(t, p.Addr())
	w.SetDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := readWireMsg(w)
	if err != nil || typ != 'E' || !strings.Contains(parseErrorFields(body).Message, "client_login_timeout") {
		t.Fatalf("an idle login: want FATAL client_login_timeout, got %q %q %v", typ, body, err)
	}
	var b [1]byte
	_, err = w.Read(b[:])
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("an idle login was not closed by client_login_timeout: %v", err)
	}
}

// TestMaxPendingLogins: past max_pending_logins connections that have not
// logged in, a new one is refused at once with 53300; once one ends, a new
// one gets in.
func TestMaxPendingLogins(t *testing.T) {
	p := startBare(t, "\"u\" \"pw\"\n", func(c *config.Pooler) { c.MaxPendingLogins = 3 }, nil)
	var idle []*wireConn
	for i := 0; i < 3; i++ {
		idle = append(idle, dialWire(t, p.Addr()))
	}
	waitUntil(t, 5*time.Second, "3 pending logins", func() bool { return p.pending.Load() == 3 })
	w := dialWire(t, p.Addr())
	if code, m := w.wantError(); code != codeTooManyConns || !strings.Contains(m, "max_pending_logins 3") {
		t.Fatalf("4th pending login: got %s %q", code, m)
	}
	idle[0].Close()
	waitUntil(t, 5*time.Second, "a slot freed", func() bool { return p.pending.Load() == 2 })
	w = dialWire(t, p.Addr())
	w.startup("u", "postgres")
	if code, _ := w.auth(); code != 10 {
		t.Fatalf("after a slot freed: want a SCRAM challenge, got %d", code)
	}
}

// waitUntil polls cond every 10 ms for at most d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scramFirst starts a SCRAM exchange as user and returns the
// server-first-message's salt and iteration count, then sends a wrong
// proof and returns the error.
func scramAttempt(t *testing.T, addr, user string) (salt, iter, code, message string) {
	w := dialWire(t, addr)
	w.startup(user, "postgres")
	if c, data := w.auth(); c != 10 || !bytes.Contains(data, []byte("SCRAM-SHA-256")) {
		t.Fatalf("%s: want AuthenticationSASL, got %d %q", user, c, data)
	}
	first := "n,,n=,r=clientnonce"
	var m msgBuilder
	w.send(m.begin('p').str("SCRAM-SHA-256").i32(int32(len(first))).raw([]byte(first)).end().b)
	c, data := w.auth()
	if c != 11 {
		t.Fatalf("%s: want SASLContinue, got %d", user, c)
	}
	sf := string(data)
	r := scramAttr(sf, "r")
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	m.b = m.b[:0]
	w.send(m.begin('p').raw([]byte("c=biws,r=" + r + ",p=" + proof)).end().b)
	code, message = w.wantError()
	return scramAttr(sf, "s"), scramAttr(sf, "i"), code, message
}

// TestNoUserEnumeration: an unknown user gets the same exchange as a
// known one (a stable salt, 4096 iterations; an md5 salt) and the same
// error at the end.
func TestNoUserEnumeration(t *testing.T) {
	p := startBare(t, "\"known\" \"pw\"\n\"hashed\" \""+md5Password("hashed", "pw")+"\"\n", nil, nil)
	s1, i1, c1, m1 := scramAttempt(t, p.Addr(), "known")
	s2, i2, c2, m2 := scramAttempt(t, p.Addr(), "nobody")
	s3, _, _, _ := scramAttempt(t, p.Addr(), "nobody")
	s4, _, _, _ := scramAttempt(t, p.Addr(), "known")
	if c1 != codeInvalidPassword || c2 != codeInvalidPassword {
		t.Fatalf("codes %s, %s; want 28P01 for both", c1, c2)
	}
	if strings.Replace(m1, "known", "X", 1) != strings.Replace(m2, "nobody", "X", 1) {
		t.Fatalf("messages differ: %q / %q", m1, m2)
	}
	if i1 != "4096" || i2 != "4096" {
		t.Fatalf("iterations %s / %s, want 4096", i1, i2)
	}
	if s2 != s3 || s1 != s4 {
		t.Fatalf("salts change between attempts: unknown %s/%s, known %s/%s", s2, s3, s1, s4)
	}
	if raw, err := base64.StdEncoding.DecodeString(s2); err != nil || len(raw) != scramSaltLen || s1 == s2 {
		t.Fatalf("unknown user's salt %q (%d bytes, %v), known's %q", s2, len(raw), err, s1)
	}
	// md5: an md5 salt for a user the pooler does not know, too.
	p5 := startBare(t, "\"hashed\" \""+md5Password("hashed", "pw")+"\"\n", func(c *config.Pooler) { c.AuthType = "md5" }, nil)
	for _, user := range []string{"hashed", "nobody"} {
		w := dialWire(t, p5.Addr())
		w.startup(user, "postgres")
		if c, salt := w.auth(); c != 5 || len(salt) != 4 {
			t.Fatalf("%s: want an md5 challenge, got %d", user, c)
		}
		w.send(msg('p', []byte("md5"+strings.Repeat("0", 32)+"\x00")))
		if code, m := w.wantError(); code != codeInvalidPassword || m != fmt.Sprintf("password authentication failed for user %q", user) {
			t.Fatalf("%s: got %s %q", user, code, m)
		}
	}
}

// TestStartupLimit: a startup packet longer than max_packet_size (when
// that is below Postgres's 10000-byte limit) is refused by its length.
func TestStartupLimit(t *testing.T) {
	p := startBare(t, "", func(c *config.Pooler) { c.MaxPacketSize = 2048 }, nil)
	w := dialWire(t, p.Addr())
	var h [8]byte
	binary.BigEndian.PutUint32(h[:], 5000)
	binary.BigEndian.PutUint32(h[4:], protocolV3)
	w.send(h[:])
	if code, m := w.wantError(); code != codeProtocolViolation || !strings.Contains(m, "startup packet length 5000") {
		t.Fatalf("got %s %q", code, m)
	}
}

func TestHBATLS(t *testing.T) {
	rules, err := parseHBA([]string{
		"hostssl all tlsonly 0.0.0.0/0 scram-sha-256",
		"hostnossl all tlsonly 0.0.0.0/0 reject",
		"hostnossl all plainonly 0.0.0.0/0 md5",
		"host all all 0.0.0.0/0 plain",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := fuzzPooler(t)
	p.hba = rules
	for _, tc := range []struct {
		user string
		tls  bool
		want string
	}{
		{"tlsonly", true, "scram-sha-256"}, {"tlsonly", false, ""},
		{"plainonly", false, "md5"}, {"plainonly", true, "plain"},
		{"other", true, "plain"}, {"other", false, "plain"},
	} {
		c := &client{p: p, conn: &byteConn{}, tls: tc.tls}
		got, err := p.hbaMethod(c, "db", tc.user)
		if got != tc.want || (tc.want == "" && err == nil) {
			t.Errorf("user %s tls %v: method %q, %v; want %q", tc.user, tc.tls, got, err, tc.want)
		}
	}
	if _, err := parseHBA([]string{"hostgssenc all all 0.0.0.0/0 md5"}); err == nil {
		t.Error("an unknown rule type was accepted")
	}
}

func TestStatementRegistryBounded(t *testing.T) {
	var r stmtRegistry
	for i := 0; i < maxRegistryStmts+500; i++ {
		r.intern([]byte(fmt.Sprintf("select %d\x00\x00\x00", i)))
	}
	if len(r.byQ) > maxRegistryStmts {
		t.Fatalf("registry holds %d statements, bound %d", len(r.byQ), maxRegistryStmts)
	}
	big := bytes.Repeat([]byte("x"), 20<<20)
	for i := 0; i < 5; i++ {
		big[0] = byte('a' + i)
		r.intern(big)
	}
	if r.bytes > maxRegistryBytes {
		t.Fatalf("registry holds %d bytes, bound %d", r.bytes, maxRegistryBytes)
	}
	if d := r.intern(big); d != r.intern(big) {
		t.Fatal("equal statements are not shared")
	}
}

// metricValue is the value of an unlabelled metric of p's collector (-1
// when it is missing).
func metricValue(t *testing.T, p *Pooler, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.Metric) == 0 {
			continue
		}
		m := mf.Metric[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}
