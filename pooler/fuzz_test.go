package pooler

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
)

// byteConn is a net.Conn that reads a fixed input and drops writes.
type byteConn struct {
	r *bytes.Reader
}

func (b *byteConn) Read(p []byte) (int, error)         { return b.r.Read(p) }
func (b *byteConn) Write(p []byte) (int, error)        { return len(p), nil }
func (b *byteConn) Close() error                       { return nil }
func (b *byteConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (b *byteConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (b *byteConn) SetDeadline(t time.Time) error      { return nil }
func (b *byteConn) SetReadDeadline(t time.Time) error  { return nil }
func (b *byteConn) SetWriteDeadline(t time.Time) error { return nil }

func msg(t byte, body []byte) []byte {
	b := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func startupPacket(code uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(b, uint32(8+len(body)))
	binary.BigEndian.PutUint32(b[4:], code)
	return append(b, body...)
}

const fuzzMaxPacket = 4096

func fuzzPooler(t testing.TB) *Pooler {
	cfg := config.DefaultPooler()
	cfg.MaxPacketSize = fuzzMaxPacket
	cfg.AuthType = "trust"
	p, err := New(cfg, NewStaticRouter("127.0.0.1:1"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzClientFraming feeds junk to the startup phase and to the message
// framing of an established session: every input must end in a clean
// error (protocol violation or end of input), never a panic, and no
// message body larger than max_packet_size may be accepted.
func FuzzClientFraming(f *testing.F) {
	f.Add(startupPacket(protocolV3, []byte("user\x00u\x00database\x00d\x00\x00")))
	f.Add(startupPacket(sslRequestCode, nil))
	f.Add(append(startupPacket(gssEncRequestCode, nil), startupPacket(protocolV3, []byte("user\x00u\x00\x00"))...))
	f.Add(startupPacket(cancelRequestCode, []byte{0, 0, 0, 1, 0, 0, 0, 2}))
	f.Add(startupPacket(protocolV3, []byte("user\x00u")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 4})
	f.Add(msg('Q', []byte("SELECT 1\x00")))
	f.Add(append(msg('S', nil), msg('Q', []byte("select 2\x00"))...))
	f.Add(append(msg('P', []byte("s1\x00select $1\x00\x00\x00")), msg('B', []byte("\x00s1\x00\x00\x00\x00\x00\x00\x00"))...))
	f.Add([]byte{'Q', 0x80, 0, 0, 0})
	f.Add([]byte{'Q', 0, 0, 0, 3})
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff, 'x'})
	f.Add([]byte{'d', 0, 0, 0x10, 0x05})
	f.Add([]byte{'Q', 0, 0, 0, 20, 'a', 'b'})
	p := fuzzPooler(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Startup phase.
		c := &client{p: p, conn: &byteConn{bytes.NewReader(data)}}
		params, err := c.readStartup()
		if err == nil && params != nil && params["user"] == "" {
			t.Fatalf("startup accepted without a user: %v", params)
		}
		// Session framing: read every message as serve does, skipping bodies.
		c = &client{p: p, conn: &byteConn{bytes.NewReader(data)}}
		for i := 0; ; i++ {
			typ, n, err := c.nextMessage()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("message %d: unclean error %v", i, err)
				}
				break
			}
			if n < 0 || n > fuzzMaxPacket {
				t.Fatalf("message %d %q: accepted body of %d bytes past max_packet_size", i, typ, n)
			}
			if typ == 'P' || typ == 'B' {
				// The name parsing the handlers do must not panic either.
				if b, err := readBody(c.br, n); err == nil {
					name, rest, _ := cbytes(b)
					_, _, _ = cbytes(rest)
					_ = name
				}
				continue
			}
			if _, err := c.br.Discard(n); err != nil {
				break
			}
		}
		if c.br != nil {
			putReader(c.br)
		}
	})
}

// TestBodyLen pins the framing checks the fuzz target relies on.
func TestBodyLen(t *testing.T) {
	for _, tc := range []struct {
		hdr  []byte
		want int
		ok   bool
	}{
		{[]byte{'Q', 0, 0, 0, 4}, 0, true},
		{[]byte{'Q', 0, 0, 0, 3}, 0, false},
		{[]byte{'Q', 0xff, 0xff, 0xff, 0xff}, 0, false},
		{[]byte{'Q', 0, 0, 0x10, 4}, 4096, true},
		{[]byte{'Q', 0, 0, 0x10, 5}, 0, false},
	} {
		n, err := bodyLen(tc.hdr, 4096)
		if (err == nil) != tc.ok || (tc.ok && n != tc.want) {
			t.Errorf("bodyLen(%v) = %d, %v", tc.hdr, n, err)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("bodyLen(%v) error %v is not ErrProtocol", tc.hdr, err)
		}
	}
}

func TestParseUserlist(t *testing.T) {
	in := "; comment\n\"alice\" \"pw\"\n\"bob\" \"md5" + "0123456789abcdef0123456789abcdef\"\n" +
		"\"q\"\"uote\" \"SCRAM-SHA-256$4096:c2FsdA==$" +
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n"
	users, err := parseUserlist(bytes.NewReader([]byte(in)), "test")
	if err != nil {
		t.Fatal(err)
	}
	if users["alice"].plain != "pw" || users["bob"].md5 == "" || users["q\"uote"].scram == nil {
		t.Fatalf("parsed %+v", users)
	}
	if _, err := parseUserlist(bytes.NewReader([]byte("alice pw\n")), "test"); err == nil {
		t.Fatal("unquoted line accepted")
	}
}

func TestTransientLoginError(t *testing.T) {
	for code, want := range map[string]bool{"57P03": true, "57P01": true, "53300": true, "28P01": false, "3D000": false} {
		if transientLoginError(code) != want {
			t.Errorf("transientLoginError(%s) = %v", code, !want)
		}
	}
}

// fuzzLoginPooler knows a plain-text, an md5 and a SCRAM user.
func fuzzLoginPooler(t testing.TB) *Pooler {
	p := fuzzPooler(t)
	sec, err := scramFromPlain(p.mockKey[:], "scram", "pw")
	if err != nil {
		t.Fatal(err)
	}
	p.users = map[string]secret{
		"plain":  {plain: "pw"},
		"hashed": {md5: md5Password("hashed", "pw")},
		"scram":  {scram: sec},
		"empty":  {},
	}
	return p
}

// FuzzLogin feeds junk to the whole pre-auth path a client drives:
// startup negotiation, the hba choice, and the password exchange of each
// method (first input byte: scram-sha-256, md5 or plain). Every input
// must end in a clean error, never a panic, and no unknown user or empty
// secret may ever log in.
func FuzzLogin(f *testing.F) {
	start := func(user string) []byte {
		return startupPacket(protocolV3, []byte("user\x00"+user+"\x00database\x00db\x00\x00"))
	}
	var m msgBuilder
	first := "n,,n=,r=abc"
	saslInit := m.begin('p').str("SCRAM-SHA-256").i32(int32(len(first))).raw([]byte(first)).end().b
	f.Add(append([]byte{0}, append(start("scram"), append(saslInit, msg('p', []byte("c=biws,r=abc,p=AAAA"))...)...)...))
	f.Add(append([]byte{0}, append(start("nobody"), saslInit...)...))
	f.Add(append([]byte{1}, append(start("hashed"), msg('p', []byte("md5"+strings.Repeat("0", 32)+"\x00"))...)...))
	f.Add(append([]byte{1}, append(start("empty"), msg('p', []byte("md5\x00"))...)...))
	f.Add(append([]byte{2}, append(start("plain"), msg('p', []byte("pw\x00"))...)...))
	f.Add(append([]byte{2}, append(start("plain"), msg('p', []byte("wrong\x00"))...)...))
	f.Add(append([]byte{0}, append(startupPacket(sslRequestCode, nil), start("scram")...)...))
	f.Add([]byte{0, 0, 0, 0, 8, 0, 2, 0, 0})
	f.Add(append([]byte{0}, append(start("scram"), 'p', 0x7f, 0xff, 0xff, 0xff)...))
	p := fuzzLoginPooler(f)
	methods := []string{"scram-sha-256", "md5", "plain"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		method := methods[int(data[0])%len(methods)]
		c := &client{p: p, conn: &byteConn{bytes.NewReader(data[1:])}}
		params, err := c.readStartup()
		if err != nil || params == nil {
			checkLoginErr(t, err)
			return
		}
		user := params["user"]
		if _, err := p.hbaMethod(c, params["database"], user); err != nil {
			checkLoginErr(t, err)
			return
		}
		sec, known, err := p.lookupUser(user, params["database"], time.Time{})
		if err != nil {
			t.Fatalf("lookup without auth_query: %v", err)
		}
		_, err = c.authenticate(method, user, sec, known)
		if err == nil && (!known || !sec.usable()) {
			t.Fatalf("user %q (known %v) logged in with %s", user, known, method)
		}
		checkLoginErr(t, err)
	})
}

// checkLoginErr fails on an error that is not one a login may end with.
func checkLoginErr(t *testing.T, err error) {
	t.Helper()
	var le *loginError
	if err == nil || errors.As(err, &le) || errors.Is(err, ErrProtocol) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	t.Fatalf("unclean login error: %v", err)
}

// FuzzSCRAMServer feeds junk SCRAM messages to the verifier. "NONCE" in
// the final message stands for the nonce the server made up, so that
// the fuzzer gets past the nonce check to the proof.
func FuzzSCRAMServer(f *testing.F) {
	sec, _ := scramFromPlain(make([]byte, 32), "u", "pw")
	f.Add("n,,n=,r=abc", "c=biws,r=NONCE,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("y,,n=u,r=abc", "c=eSws,r=NONCE,p=")
	f.Add("p=tls-server-end-point,,n=,r=x", "c=,r=,p=")
	f.Add("n,a=b,n=,r=x", "p=")
	f.Add("n,,n=,r=abc,e=x", "c=biws,r=NONCE,x=y,p=AAAA")
	f.Fuzz(func(t *testing.T, first, final string) {
		s := &scramServer{sec: sec}
		if _, err := s.first(first); err != nil {
			return
		}
		if !strings.HasPrefix(s.gs2, "n,") && !strings.HasPrefix(s.gs2, "y,") {
			t.Fatalf("gs2 header %q accepted", s.gs2)
		}
		_, ck, ok, err := s.final(strings.ReplaceAll(final, "NONCE", s.nonce))
		if ok && (err != nil || len(ck) != 32) {
			t.Fatalf("ok with err %v, client key %d bytes", err, len(ck))
		}
	})
}

// FuzzUserlist: any auth_file either loads, with a usable secret for
// every user, or is refused with an error naming the file; never a panic.
func FuzzUserlist(f *testing.F) {
	f.Add("\"alice\" \"pw\"\n; comment\n# comment\n\"bob\" \"md50123456789abcdef0123456789abcdef\"\n")
	f.Add("\"q\"\"uote\" \"SCRAM-SHA-256$4096:c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n")
	f.Add("\"empty\" \"\"\n")
	f.Add("\"unterminated\n")
	f.Add("alice pw\n")
	f.Add("\"a\" \"SCRAM-SHA-256$0:$:\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		users, err := parseUserlist(strings.NewReader(in), "fuzz.txt")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.txt") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for u, s := range users {
			if !s.usable() {
				t.Fatalf("user %q loaded with an unusable secret", u)
			}
		}
	})
}
