package pooler

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres speaks it, both ways:
// scramServer checks a client, scramClient logs the pooler in to Postgres.
// Written here rather than taken from a library because the pooler needs
// two things libraries do not offer: the ClientKey a client proved (to log
// in to Postgres as that client without its password, as PgBouncer does)
// and a client that logs in from that ClientKey.

// scramIterations and scramSaltLen are Postgres's defaults for new
// secrets; a made-up secret uses them so that it looks like a real one.
const (
	scramIterations = 4096
	scramSaltLen    = 16
	// maxServerIterations bounds the iteration count a server may ask
	// the pooler to compute (Postgres's default is 4096).
	maxServerIterations = 1 << 20
)

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramKeys derives ClientKey, StoredKey and ServerKey from a password.
func scramKeys(password string, salt []byte, iter int) (clientKey, storedKey, serverKey []byte, err error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pooler: scram: %w", err)
	}
	clientKey = hmacSHA256(salted, "Client Key")
	sk := sha256.Sum256(clientKey)
	return clientKey, sk[:], hmacSHA256(salted, "Server Key"), nil
}

// userSalt is the salt the pooler shows for user when it has no stored
// salt: derived from the user name and a per-process key, so that the
// same user always gets the same salt, and a user the pooler does not
// know cannot be told from one whose password it keeps in plain text.
func userSalt(key []byte, user string) []byte {
	return hmacSHA256(key, "scram salt\x00"+user)[:scramSaltLen]
}

// scramFromPlain builds a verifier for a plain-text password.
func scramFromPlain(key []byte, user, password string) (*scramSecret, error) {
	salt := userSalt(key, user)
	_, sk, vk, err := scramKeys(password, salt, scramIterations)
	if err != nil {
		return nil, err
	}
	return &scramSecret{iter: scramIterations, salt: salt, storedKey: sk, serverKey: vk}, nil
}

// mockSecret is the verifier shown for a user the pooler does not know
// (or cannot check): Postgres's default shape, a salt derived as for a
// plain-text password, keys that no proof matches.
func mockSecret(key []byte, user string) *scramSecret {
	sk, vk := make([]byte, 32), make([]byte, 32)
	rand.Read(sk)
	rand.Read(vk)
	return &scramSecret{iter: scramIterations, salt: userSalt(key, user), storedKey: sk, serverKey: vk}
}

func nonce() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// scramAttr returns the value of attribute k in a SCRAM message.
func scramAttr(msg, k string) string {
	for _, f := range strings.Split(msg, ",") {
		if len(f) >= 2 && f[0] == k[0] && f[1] == '=' {
			return f[2:]
		}
	}
	return ""
}

// printable reports whether s is a valid SCRAM nonce: printable ASCII
// without commas.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return s != ""
}

// scramServer is the verifier side of one SCRAM-SHA-256 exchange.
type scramServer struct {
	sec                        *scramSecret
	gs2                        string // the client's gs2 header, e.g. "n,,"
	clientFirstBare, serverFst string
	nonce                      string
}

// first handles client-first-message and returns server-first-message.
// The pooler offers SCRAM-SHA-256 without channel binding (not -PLUS), so
// the gs2 header must be "n,," or "y,,": "p=" asks for binding the pooler
// did not offer, and an authorization identity is not supported (as in
// Postgres).
func (s *scramServer) first(clientFirst string) (string, error) {
	flag, rest, ok := strings.Cut(clientFirst, ",")
	if !ok {
		return "", fmt.Errorf("scram: malformed client-first-message")
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return "", fmt.Errorf("scram: client requires channel binding, which the pooler does not offer (use channel_binding=prefer or disable)")
	default:
		return "", fmt.Errorf("scram: malformed gs2 header %q", flag)
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return "", fmt.Errorf("scram: malformed client-first-message")
	}
	if authzid != "" {
		return "", fmt.Errorf("scram: authorization identities are not supported")
	}
	if !strings.HasPrefix(bare, "n=") {
		return "", fmt.Errorf("scram: client-first-message has no user name attribute")
	}
	s.gs2 = clientFirst[:len(flag)+1+len(authzid)+1]
	s.clientFirstBare = bare
	cn := scramAttr(bare, "r")
	if !printable(cn) {
		return "", fmt.Errorf("scram: client nonce missing or not printable")
	}
	s.nonce = cn + nonce()
	s.serverFst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.sec.salt) + ",i=" + strconv.Itoa(s.sec.iter)
	return s.serverFst, nil
}

// final checks client-final-message; it returns server-final-message and
// the client's ClientKey, or ok false for a wrong password. The channel
// binding attribute must repeat the gs2 header of the first message.
func (s *scramServer) final(clientFinal string) (serverFinal string, clientKey []byte, ok bool, err error) {
	i := strings.LastIndex(clientFinal, ",p=")
	if i < 0 {
		return "", nil, false, fmt.Errorf("scram: proof missing")
	}
	withoutProof := clientFinal[:i]
	cb, rest, _ := strings.Cut(withoutProof, ",")
	if !strings.HasPrefix(cb, "c=") {
		return "", nil, false, fmt.Errorf("scram: channel binding attribute missing")
	}
	if cb[2:] != base64.StdEncoding.EncodeToString([]byte(s.gs2)) {
		return "", nil, false, fmt.Errorf("scram: channel binding %q does not match the gs2 header %q", cb[2:], s.gs2)
	}
	r, _, _ := strings.Cut(rest, ",")
	if !strings.HasPrefix(r, "r=") || !equal(r[2:], s.nonce) {
		return "", nil, false, fmt.Errorf("scram: nonce mismatch")
	}
	proof, err := base64.StdEncoding.DecodeString(clientFinal[i+3:])
	if err != nil || len(proof) != 32 {
		return "", nil, false, fmt.Errorf("scram: bad proof encoding")
	}
	authMsg := s.clientFirstBare + "," + s.serverFst + "," + withoutProof
	sig := hmacSHA256(s.sec.storedKey, authMsg)
	ck := make([]byte, 32)
	for j := range ck {
		ck[j] = proof[j] ^ sig[j]
	}
	h := sha256.Sum256(ck)
	if subtle.ConstantTimeCompare(h[:], s.sec.storedKey) != 1 {
		return "", nil, false, nil
	}
	return "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(s.sec.serverKey, authMsg)), ck, true, nil
}

// scramClient is the pooler logging in to Postgres with SCRAM-SHA-256,
// from a password or from a ClientKey (with the ServerKey to check the
// server: the login fails unless the server proves it knows the secret).
type scramClient struct {
	user                         string
	password                     string
	clientKey, serverKey         []byte
	clientNonce, clientFirstBare string
	authMsg                      string
	expectedServerSig            []byte
	verified                     bool
}

func (c *scramClient) firstMessage() string {
	c.clientNonce = nonce()
	c.clientFirstBare = "n=,r=" + c.clientNonce
	return "n,," + c.clientFirstBare
}

func (c *scramClient) finalMessage(serverFirst string) (string, error) {
	r, s, is := scramAttr(serverFirst, "r"), scramAttr(serverFirst, "s"), scramAttr(serverFirst, "i")
	if !strings.HasPrefix(r, c.clientNonce) || len(r) == len(c.clientNonce) || !printable(r) {
		return "", fmt.Errorf("scram: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(s)
	iter, err2 := strconv.Atoi(is)
	if err != nil || err2 != nil || iter < 1 || len(salt) == 0 {
		return "", fmt.Errorf("scram: bad salt or iteration count from server")
	}
	if iter > maxServerIterations {
		return "", fmt.Errorf("scram: server asks for %d iterations, more than the pooler computes (%d)", iter, maxServerIterations)
	}
	ck, sk := c.clientKey, c.serverKey
	if c.password != "" || ck == nil {
		ck, _, sk, err = scramKeys(c.password, salt, iter)
		if err != nil {
			return "", err
		}
	}
	if sk == nil {
		return "", fmt.Errorf("scram: no ServerKey to check the server's signature with")
	}
	withoutProof := "c=biws,r=" + r
	c.authMsg = c.clientFirstBare + "," + serverFirst + "," + withoutProof
	stored := sha256.Sum256(ck)
	sig := hmacSHA256(stored[:], c.authMsg)
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = ck[i] ^ sig[i]
	}
	c.expectedServerSig = hmacSHA256(sk, c.authMsg)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

// verify checks server-final-message: the server must prove it knows the
// secret (v=), else the pooler is talking to something that is not the
// Postgres it means to log in to.
func (c *scramClient) verify(serverFinal string) error {
	if e := scramAttr(serverFinal, "e"); e != "" {
		return fmt.Errorf("scram: server refused the proof: %s", e)
	}
	v, err := base64.StdEncoding.DecodeString(scramAttr(serverFinal, "v"))
	if err != nil || len(v) == 0 {
		return fmt.Errorf("scram: server-final-message has no valid signature")
	}
	if c.expectedServerSig == nil || !hmac.Equal(v, c.expectedServerSig) {
		return fmt.Errorf("scram: server signature mismatch (the server does not know the password)")
	}
	c.verified = true
	return nil
}
