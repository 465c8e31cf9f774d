package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
)

// TestV2LeaderRequests checks the v2 API requests: a PUT of the name with
// the ttl in whole seconds (rounded up), a DELETE guarded by prevValue,
// the v2 errors 100 and 101 taken as no error, and basic auth.
func TestV2LeaderRequests(t *testing.T) {
	var mu sync.Mutex
	var got []string
	reply := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u, p, _ := r.BasicAuth()
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.URL.RawQuery+" "+string(b)+" "+u+":"+p)
		code := reply
		mu.Unlock()
		w.WriteHeader(code)
		if code == http.StatusPreconditionFailed {
			io.WriteString(w, `{"errorCode":101,"message":"Compare failed"}`)
		}
	}))
	defer srv.Close()
	v, err := newV2Leader(config.Etcd{Endpoints: []string{srv.URL}, Username: "u", Password: "p"}, "/service/", "demo", "n1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.put(ctx, 5500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	reply = http.StatusPreconditionFailed
	mu.Unlock()
	if err := v.drop(ctx); err != nil {
		t.Fatalf("a compare failure (another node's value) must not be an error: %v", err)
	}
	want := []string{
		"PUT /v2/keys/service/demo/leader  " + url.Values{"ttl": {"6"}, "value": {"n1"}}.Encode() + " u:p",
		"DELETE /v2/keys/service/demo/leader prevValue=n1  u:p",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	mu.Lock()
	reply = http.StatusNotFound
	mu.Unlock()
	if err := v.put(ctx, time.Second); err == nil || !strings.Contains(err.Error(), "--enable-v2") {
		t.Fatalf("a 404 (v2 API off) should say --enable-v2: %v", err)
	}
}
