package pooler

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// scramProof computes client-final-message for password against a
// server-first-message, with the channel binding attribute cb.
func scramProof(t *testing.T, password, clientFirstBare, serverFirst, cb string) string {
	t.Helper()
	salt, _ := base64.StdEncoding.DecodeString(scramAttr(serverFirst, "s"))
	ck, _, _, err := scramKeys(password, salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	withoutProof := "c=" + cb + ",r=" + scramAttr(serverFirst, "r")
	authMsg := clientFirstBare + "," + serverFirst + "," + withoutProof
	stored := sha256Sum(ck)
	sig := hmacSHA256(stored, authMsg)
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = ck[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func TestSCRAMServer(t *testing.T) {
	sec, err := scramFromPlain(make([]byte, 32), "u", "pw")
	if err != nil {
		t.Fatal(err)
	}
	run := func(clientFirst, cb, password string) (bool, error) {
		s := &scramServer{sec: sec}
		sf, err := s.first(clientFirst)
		if err != nil {
			return false, err
		}
		_, bare, _ := strings.Cut(clientFirst[2:], ",")
		_, _, ok, err := s.final(scramProof(t, password, bare, sf, cb))
		return ok, err
	}
	biws := base64.StdEncoding.EncodeToString([]byte("n,,"))
	yss := base64.StdEncoding.EncodeToString([]byte("y,,"))
	if ok, err := run("n,,n=,r=abc", biws, "pw"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := run("y,,n=,r=abc", yss, "pw"); !ok || err != nil {
		t.Fatalf("right password, y flag: %v %v", ok, err)
	}
	if ok, err := run("n,,n=,r=abc", biws, "wrong"); ok || err != nil {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	// c= must repeat the gs2 header: a client that said "y" (it supports
	// binding but thinks the server does not) cannot send "n" later, and
	// the other way round.
	if _, err := run("y,,n=,r=abc", biws, "pw"); err == nil || !strings.Contains(err.Error(), "channel binding") {
		t.Fatalf("c= not matching the gs2 header accepted: %v", err)
	}
	if _, err := run("n,,n=,r=abc", base64.StdEncoding.EncodeToString([]byte("p=tls-server-end-point,,")), "pw"); err == nil {
		t.Fatal("c= with binding data accepted")
	}
	for _, first := range []string{"p=tls-server-end-point,,n=,r=abc", "n,a=admin,n=,r=abc", "n,,r=abc", "n,,n=,r=a\x01b", "x,,n=,r=abc", "n,,n=,r="} {
		s := &scramServer{sec: sec}
		if _, err := s.first(first); err == nil {
			t.Errorf("client-first-message %q accepted", first)
		}
	}
}

func TestSCRAMClientVerifiesServer(t *testing.T) {
	sec, _ := scramFromPlain(make([]byte, 32), "u", "pw")
	ck, _, _, _ := scramKeys("pw", sec.salt, sec.iter)
	serverFirst := func(c *scramClient) string {
		return "r=" + c.clientNonce + "srv,s=" + base64.StdEncoding.EncodeToString(sec.salt) + ",i=4096"
	}
	// From a ClientKey without the ServerKey the server cannot be checked:
	// refuse rather than log in blind.
	c := &scramClient{clientKey: ck}
	c.firstMessage()
	if _, err := c.finalMessage(serverFirst(c)); err == nil {
		t.Fatal("SCRAM login without a ServerKey to check the server went ahead")
	}
	c = &scramClient{clientKey: ck, serverKey: sec.serverKey}
	c.firstMessage()
	if _, err := c.finalMessage(serverFirst(c)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "v=", "v=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "e=invalid-proof"} {
		if err := c.verify(bad); err == nil {
			t.Errorf("server-final-message %q accepted", bad)
		}
	}
	if err := c.verify("v=" + base64.StdEncoding.EncodeToString(c.expectedServerSig)); err != nil || !c.verified {
		t.Fatalf("right signature: %v", err)
	}
	// AuthenticationOk before SASLFinal: the server skipped its proof.
	s := &server{addr: "test"}
	sc := &scramClient{}
	if err := s.authStep(0, nil, "u", secret{}, &sc); err == nil {
		t.Fatal("AuthenticationOk without a verified SASLFinal accepted")
	}
	sc.verified = true
	if err := s.authStep(0, nil, "u", secret{}, &sc); err != nil {
		t.Fatal(err)
	}
	// An absurd iteration count from the server is refused, not computed.
	c = &scramClient{password: "pw"}
	c.firstMessage()
	if _, err := c.finalMessage("r=" + c.clientNonce + "x,s=c2FsdA==,i=2000000000"); err == nil {
		t.Fatal("2e9 iterations accepted")
	}
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}
