package pooler

import (
	"bufio"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// secret is what the pooler knows about one user's password: plain text,
// an md5 hash ("md5" + hex(md5(password+user))) or a SCRAM-SHA-256 secret.
// clientKey is set for a client that proved itself with SCRAM: it lets the
// pooler log in to Postgres as that user without the password.
type secret struct {
	plain     string
	md5       string
	scram     *scramSecret
	clientKey []byte
}

// scramSecret is Postgres's stored SCRAM-SHA-256 verifier.
type scramSecret struct {
	iter                 int
	salt                 []byte
	storedKey, serverKey []byte
}

// parseSecret classifies a userlist.txt or pg_shadow password.
func parseSecret(pw string) secret {
	if strings.HasPrefix(pw, "SCRAM-SHA-256$") {
		if s, err := parseSCRAMSecret(pw); err == nil {
			return secret{scram: s}
		}
	}
	if len(pw) == 35 && strings.HasPrefix(pw, "md5") {
		if _, err := hex.DecodeString(pw[3:]); err == nil {
			return secret{md5: pw}
		}
	}
	return secret{plain: pw}
}

// parseSCRAMSecret reads "SCRAM-SHA-256$iter:salt$StoredKey:ServerKey".
func parseSCRAMSecret(s string) (*scramSecret, error) {
	parts := strings.Split(strings.TrimPrefix(s, "SCRAM-SHA-256$"), "$")
	if len(parts) != 2 {
		return nil, fmt.Errorf("pooler: SCRAM secret: want iter:salt$StoredKey:ServerKey")
	}
	is, ks := strings.Split(parts[0], ":"), strings.Split(parts[1], ":")
	if len(is) != 2 || len(ks) != 2 {
		return nil, fmt.Errorf("pooler: SCRAM secret: want iter:salt$StoredKey:ServerKey")
	}
	iter, err := strconv.Atoi(is[0])
	if err != nil || iter < 1 {
		return nil, fmt.Errorf("pooler: SCRAM secret: bad iteration count %q", is[0])
	}
	salt, err1 := base64.StdEncoding.DecodeString(is[1])
	sk, err2 := base64.StdEncoding.DecodeString(ks[0])
	vk, err3 := base64.StdEncoding.DecodeString(ks[1])
	if err1 != nil || err2 != nil || err3 != nil || len(sk) != 32 || len(vk) != 32 {
		return nil, fmt.Errorf("pooler: SCRAM secret: bad base64 salt or keys")
	}
	return &scramSecret{iter: iter, salt: salt, storedKey: sk, serverKey: vk}, nil
}

// loadUserlist reads PgBouncer's auth_file format: one `"user" "password"`
// per line; `""` inside quotes is a literal quote; lines starting with ;
// or # are comments.
func loadUserlist(path string) (map[string]secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pooler: auth_file: %w", err)
	}
	defer f.Close()
	return parseUserlist(f, path)
}

func parseUserlist(r io.Reader, name string) (map[string]secret, error) {
	users := make(map[string]secret)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		user, rest, err := quoted(line)
		if err == nil {
			var pw string
			pw, _, err = quoted(strings.TrimSpace(rest))
			if err == nil {
				users[user] = parseSecret(pw)
				continue
			}
		}
		return nil, fmt.Errorf("pooler: auth_file %s line %d: %v (write \"user\" \"password\")", name, ln, err)
	}
	return users, sc.Err()
}

func quoted(s string) (string, string, error) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", fmt.Errorf("want a double-quoted string")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '"' {
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			return b.String(), s[i+1:], nil
		}
		b.WriteByte(s[i])
	}
	return "", "", fmt.Errorf("unterminated quoted string")
}

// md5Password is Postgres's stored md5 form of a password.
func md5Password(user, password string) string {
	h := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(h[:])
}

// md5Response answers an md5 challenge from the stored md5 form.
func md5Response(stored string, salt []byte) string {
	h := md5.Sum(append([]byte(stored[3:]), salt...))
	return "md5" + hex.EncodeToString(h[:])
}

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

// scramFromPlain builds a verifier for a plain-text password.
func scramFromPlain(password string) (*scramSecret, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	_, sk, vk, err := scramKeys(password, salt, 4096)
	if err != nil {
		return nil, err
	}
	return &scramSecret{iter: 4096, salt: salt, storedKey: sk, serverKey: vk}, nil
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

// scramServer is the verifier side of one SCRAM-SHA-256 exchange.
type scramServer struct {
	sec                        *scramSecret
	clientFirstBare, serverFst string
	nonce                      string
}

// first handles client-first-message and returns server-first-message.
func (s *scramServer) first(clientFirst string) (string, error) {
	// gs2 header: n,, or y,, (no channel binding offered by us).
	if !(strings.HasPrefix(clientFirst, "n,") || strings.HasPrefix(clientFirst, "y,")) {
		return "", fmt.Errorf("scram: unsupported channel binding in %q", clientFirst)
	}
	i := strings.Index(clientFirst[2:], ",")
	if i < 0 {
		return "", fmt.Errorf("scram: malformed client-first-message")
	}
	s.clientFirstBare = clientFirst[2+i+1:]
	cn := scramAttr(s.clientFirstBare, "r")
	if cn == "" {
		return "", fmt.Errorf("scram: client nonce missing")
	}
	s.nonce = cn + nonce()
	s.serverFst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.sec.salt) + ",i=" + strconv.Itoa(s.sec.iter)
	return s.serverFst, nil
}

// final checks client-final-message; it returns server-final-message and
// the client's ClientKey, or ok false for a wrong password.
func (s *scramServer) final(clientFinal string) (serverFinal string, clientKey []byte, ok bool, err error) {
	i := strings.LastIndex(clientFinal, ",p=")
	if i < 0 {
		return "", nil, false, fmt.Errorf("scram: proof missing")
	}
	withoutProof := clientFinal[:i]
	if scramAttr(withoutProof, "r") != s.nonce {
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
// from a password or from a ClientKey (plus ServerKey to check the server).
type scramClient struct {
	user                         string
	password                     string
	clientKey, serverKey         []byte
	clientNonce, clientFirstBare string
	authMsg                      string
	expectedServerSig            []byte
}

func (c *scramClient) firstMessage() string {
	c.clientNonce = nonce()
	c.clientFirstBare = "n=,r=" + c.clientNonce
	return "n,," + c.clientFirstBare
}

func (c *scramClient) finalMessage(serverFirst string) (string, error) {
	r, s, is := scramAttr(serverFirst, "r"), scramAttr(serverFirst, "s"), scramAttr(serverFirst, "i")
	if !strings.HasPrefix(r, c.clientNonce) {
		return "", fmt.Errorf("scram: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(s)
	iter, err2 := strconv.Atoi(is)
	if err != nil || err2 != nil || iter < 1 {
		return "", fmt.Errorf("scram: bad salt or iteration count from server")
	}
	ck, sk := c.clientKey, c.serverKey
	if c.password != "" || ck == nil {
		ck, _, sk, err = scramKeys(c.password, salt, iter)
		if err != nil {
			return "", err
		}
	}
	withoutProof := "c=biws,r=" + r
	c.authMsg = c.clientFirstBare + "," + serverFirst + "," + withoutProof
	stored := sha256.Sum256(ck)
	sig := hmacSHA256(stored[:], c.authMsg)
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = ck[i] ^ sig[i]
	}
	if sk != nil {
		c.expectedServerSig = hmacSHA256(sk, c.authMsg)
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

func (c *scramClient) verify(serverFinal string) error {
	v, err := base64.StdEncoding.DecodeString(scramAttr(serverFinal, "v"))
	if err != nil {
		return fmt.Errorf("scram: bad server signature encoding")
	}
	if c.expectedServerSig != nil && !hmac.Equal(v, c.expectedServerSig) {
		return fmt.Errorf("scram: server signature mismatch (server does not know the password)")
	}
	return nil
}
