package pooler

import (
	"bufio"
	"crypto/md5"
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

// CheckUserlist reads a userlist.txt as the pooler will (pgha convert
// checks a PgBouncer user list with it).
func CheckUserlist(r io.Reader, name string) error {
	_, err := parseUserlist(r, name)
	return err
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
			if err == nil && pw == "" {
				// No login can be checked against it (and md5 would have
				// nothing to hash): refuse the file rather than the user.
				return nil, fmt.Errorf("pooler: auth_file %s line %d: user %q has an empty password: write its password, its md5 hash or its SCRAM secret (from pg_authid), or remove the line", name, ln, user)
			}
			if err == nil {
				users[user] = parseSecret(pw)
				continue
			}
		}
		return nil, fmt.Errorf("pooler: auth_file %s line %d: %v (write \"user\" \"password\")", name, ln, err)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pooler: auth_file %s: %w", name, err)
	}
	return users, nil
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

// md5Response answers an md5 challenge from the stored md5 form. A stored
// value that is not an md5 hash gives a response no client can match.
func md5Response(stored string, salt []byte) string {
	if len(stored) != 35 || !strings.HasPrefix(stored, "md5") {
		return "!"
	}
	h := md5.Sum(append([]byte(stored[3:]), salt...))
	return "md5" + hex.EncodeToString(h[:])
}

// equal compares two secrets (or a secret and what a client sent) in
// constant time for equal lengths.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// usable reports whether a secret can check a password at all (an empty
// password from auth_query or SetAuthUser cannot).
func (s secret) usable() bool {
	return s.plain != "" || s.md5 != "" || s.scram != nil
}
