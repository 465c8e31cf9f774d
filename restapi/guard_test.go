package restapi

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testcert"
)

// doHeaders sends one request with extra headers ("Host" sets the Host
// header) through client to base+path.
func doHeaders(t testing.TB, client *http.Client, base, method, path, body string, hdr map[string]string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestUnsafeMethodsNeedJSONBodies(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	_, acts, ts := newTestServer(t, config.RESTAPI{}, node)
	json := `{"force":true}`
	cases := []struct {
		name, method, path, body, ct string
		want                         int
		wantBody                     string
	}{
		{"form body", "POST", "/reinitialize", json, "application/x-www-form-urlencoded", 415, "Content-Type application/x-www-form-urlencoded is not application/json"},
		{"text/plain body (an HTML form's enctype)", "POST", "/reinitialize", json, "text/plain", 415, "-H 'Content-Type: application/json'"},
		{"multipart body", "PATCH", "/config", `{"ttl":20}`, "multipart/form-data; boundary=x", 415, "not application/json"},
		{"garbage content type", "PUT", "/config", `{"ttl":20}`, "application/json;;;=", 415, "not application/json"},
		{"json", "POST", "/reinitialize", json, "application/json", 200, "reinitialize started"},
		{"json with charset", "POST", "/reinitialize", json, "Application/JSON; charset=utf-8", 200, "reinitialize started"},
		// patronictl sends its JSON bodies without a Content-Type.
		{"json without content type", "POST", "/reinitialize", json, "", 200, "reinitialize started"},
		// A request without a body passes whatever it declares.
		{"empty restart", "POST", "/restart", "", "", 200, "restarted successfully"},
		{"empty reload", "POST", "/reload", "", "", 202, "reload scheduled"},
		{"empty reload declared as a form", "POST", "/reload", "", "application/x-www-form-urlencoded", 202, "reload scheduled"},
		{"DELETE without body", "DELETE", "/restart", "", "text/plain", 404, "no restarts are scheduled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(acts.called())
			hdr := map[string]string{}
			if c.ct != "" {
				hdr["Content-Type"] = c.ct
			}
			code, body := doHeaders(t, ts.Client(), ts.URL, c.method, c.path, c.body, hdr)
			if code != c.want || !strings.Contains(body, c.wantBody) {
				t.Errorf("%s %s (%s) = %d %q, want %d containing %q", c.method, c.path, c.ct, code, body, c.want, c.wantBody)
			}
			if code == 415 && len(acts.called()) != before {
				t.Errorf("a refused request reached actions: %v", acts.called()[before:])
			}
		})
	}
}

// TestBrowserCannotDriveTheAPI plays what a web page in the operator's
// browser can send to an API on 127.0.0.1: a cross-site form or fetch,
// and a DNS-rebound same-origin fetch. Each is refused before it acts;
// curl, pghactl and the API's own origin are served.
func TestBrowserCannotDriveTheAPI(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	_, acts, ts := newTestServer(t, config.RESTAPI{Listen: "127.0.0.1:8008", ConnectAddress: "db1.example.com:8008"}, node)
	self := strings.TrimPrefix(ts.URL, "http://")
	_, port, _ := strings.Cut(self, ":")
	cases := []struct {
		name string
		hdr  map[string]string
		want int
		why  string
	}{
		{"form from another site", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}, 403, "Sec-Fetch-Site: cross-site"},
		{"fetch from another site, no fetch metadata", map[string]string{"Origin": "https://evil.example"}, 403, "Origin https://evil.example is not this API"},
		{"another port of the same host (same-site)", map[string]string{"Origin": "http://127.0.0.1:3000", "Sec-Fetch-Site": "same-site"}, 403, "same-site"},
		{"another port, old browser", map[string]string{"Origin": "http://127.0.0.1:3000"}, 403, "Origin http://127.0.0.1:3000 is not this API"},
		{"sandboxed page", map[string]string{"Origin": "null"}, 403, "Origin null"},
		{"DNS rebinding", map[string]string{"Host": "rebind.evil.example:" + port, "Origin": "http://rebind.evil.example:" + port, "Sec-Fetch-Site": "same-origin"}, 403, "Host rebind.evil.example:" + port + " is not a name of this node"},
		{"DNS rebinding without Origin", map[string]string{"Host": "rebind.evil.example:" + port}, 403, "guard against DNS rebinding"},
		{"curl", nil, 202, "reload scheduled"},
		{"the API's own origin", map[string]string{"Origin": "http://" + self, "Sec-Fetch-Site": "same-origin"}, 202, "reload scheduled"},
		{"localhost", map[string]string{"Host": "LOCALHOST:" + port, "Origin": "http://localhost:" + port}, 202, "reload scheduled"},
		{"IPv6 loopback", map[string]string{"Host": "[::1]:" + port}, 202, "reload scheduled"},
		{"any IP literal", map[string]string{"Host": "10.1.2.3:" + port}, 202, "reload scheduled"},
		{"connect_address name", map[string]string{"Host": "db1.example.com.:" + port}, 202, "reload scheduled"},
		{"typed into the address bar", map[string]string{"Sec-Fetch-Site": "none"}, 202, "reload scheduled"},
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		cases = append(cases, struct {
			name string
			hdr  map[string]string
			want int
			why  string
		}{"this machine's hostname", map[string]string{"Host": name + ":" + port}, 202, "reload scheduled"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(acts.called())
			code, body := doHeaders(t, ts.Client(), ts.URL, "POST", "/reload", "", c.hdr)
			if code != c.want || !strings.Contains(body, c.why) {
				t.Errorf("POST /reload %v = %d %q, want %d containing %q", c.hdr, code, body, c.want, c.why)
			}
			if code == 403 && len(acts.called()) != before {
				t.Errorf("a refused request reached actions: %v", acts.called()[before:])
			}
		})
	}
	// Every unsafe endpoint is guarded, not just /reload.
	evil := map[string]string{"Origin": "http://evil.example"}
	for _, ep := range [][2]string{{"POST", "/restart"}, {"POST", "/reinitialize"}, {"POST", "/switchover"}, {"POST", "/failover"},
		{"DELETE", "/switchover"}, {"DELETE", "/restart"}, {"PATCH", "/config"}, {"PUT", "/config"}} {
		if code, body := doHeaders(t, ts.Client(), ts.URL, ep[0], ep[1], `{"leader":"node1"}`, evil); code != 403 {
			t.Errorf("%s %s from another origin = %d %q, want 403", ep[0], ep[1], code, body)
		}
	}
	// Safe methods answer whoever asks, by whatever name (HAProxy,
	// Prometheus); pgha sends no CORS headers, so a page cannot read them.
	for _, p := range []string{"/primary", "/patroni", "/cluster", "/metrics"} {
		code, _ := doHeaders(t, ts.Client(), ts.URL, "GET", p, "", map[string]string{"Host": "lb.example.com", "Origin": "http://evil.example"})
		if code != 200 {
			t.Errorf("GET %s by another name = %d, want 200", p, code)
		}
	}
}

// TestCrossSiteRefusedBeforeAuth: with basic auth a cross-site request
// is still refused (a browser may hold the operator's credentials), and
// the refusal comes before the credentials are checked.
func TestCrossSiteRefusedBeforeAuth(t *testing.T) {
	node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
	_, acts, ts := newTestServer(t, config.RESTAPI{Authentication: config.BasicAuth{Username: "admin", Password: "s3cret"}}, node)
	code, body, _ := doAuthOrigin(t, ts, "http://evil.example")
	if code != 403 || !strings.Contains(body, "cross-site") {
		t.Errorf("cross-site POST with credentials = %d %q, want 403", code, body)
	}
	if len(acts.called()) != 0 {
		t.Errorf("reached actions: %v", acts.called())
	}
	if code, body, _ := doAuthOrigin(t, ts, ""); code != 202 {
		t.Errorf("authenticated POST /reload = %d %q", code, body)
	}
}

func doAuthOrigin(t *testing.T, ts *httptest.Server, origin string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", ts.URL+"/reload", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", "s3cret")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestVerifyClient runs the API over real TLS with a CA and checks
// Patroni's three verify_client modes.
func TestVerifyClient(t *testing.T) {
	ca := testcert.NewCA(t)
	certFile, keyFile := ca.Server(t, "db1.example.com")
	clientCert, clientKey := ca.Client(t, "pghactl")
	// A certificate from another CA proves nothing.
	strangerCert, strangerKey := testcert.NewCA(t).Client(t, "stranger")
	client := func(cert, key string) *http.Client {
		tc, err := ClientTLS(config.Ctl{CACert: ca.CertFile, CertFile: cert, KeyFile: key}, config.RESTAPI{}, false)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	anon, withCert, stranger := client("", ""), client(clientCert, clientKey), client(strangerCert, strangerKey)
	// Go's client offers a certificate only to a server that names its
	// CA; make this one offer it regardless, as a hostile client would.
	forced := stranger.Transport.(*http.Transport).TLSClientConfig
	offer := forced.Certificates[0]
	forced.Certificates = nil
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &offer, nil }

	type want struct{ get, post int } // 0: the TLS handshake fails
	for _, c := range []struct {
		mode                       string
		anon, withCert, strangerIs want
	}{
		{"none", want{200, 202}, want{200, 202}, want{200, 202}},
		{"optional", want{200, 403}, want{200, 202}, want{0, 0}},
		{"required", want{0, 0}, want{200, 202}, want{0, 0}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			node := &fakeNode{view: baseView(), ok: true, local: primaryStatus()}
			cfg := config.RESTAPI{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, CAFile: ca.CertFile, VerifyClient: c.mode}
			s, _ := runServer(t, cfg, node)
			base := "https://" + s.Addr()
			for _, cl := range []struct {
				name string
				hc   *http.Client
				want want
			}{{"no certificate", anon, c.anon}, {"client certificate", withCert, c.withCert}, {"certificate of another CA", stranger, c.strangerIs}} {
				get, _ := tryRequest(cl.hc, "GET", base+"/patroni")
				post, body := tryRequest(cl.hc, "POST", base+"/reload")
				if get != cl.want.get || post != cl.want.post {
					t.Errorf("verify_client %s, %s: GET /patroni %d, POST /reload %d %q; want %d, %d", c.mode, cl.name, get, post, body, cl.want.get, cl.want.post)
				}
				if post == 403 && !strings.Contains(body, "client certificate required") {
					t.Errorf("403 body %q does not name the missing certificate", body)
				}
			}
			// The certificate's names count as this node's for the Host check.
			code, body := doHeaders(t, withCert, base, "POST", "/reload", "", map[string]string{"Host": "db1.example.com:8008"})
			if code != 202 {
				t.Errorf("POST /reload with Host from the certificate = %d %q", code, body)
			}
		})
	}
}

// tryRequest returns the status, or 0 when the connection failed (a TLS
// handshake refused).
func tryRequest(hc *http.Client, method, url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return -1, err.Error()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestClientTLSReadsCtlThenRestapi(t *testing.T) {
	ca := testcert.NewCA(t)
	tc, err := ClientTLS(config.Ctl{}, config.RESTAPI{CAFile: ca.CertFile}, false)
	if err != nil || tc.RootCAs == nil || tc.InsecureSkipVerify || len(tc.Certificates) != 0 {
		t.Fatalf("restapi.cafile fallback: %+v %v", tc, err)
	}
	if tc, err := ClientTLS(config.Ctl{Insecure: true}, config.RESTAPI{}, false); err != nil || !tc.InsecureSkipVerify {
		t.Errorf("ctl.insecure not applied: %v", err)
	}
	if tc, err := ClientTLS(config.Ctl{}, config.RESTAPI{}, true); err != nil || !tc.InsecureSkipVerify {
		t.Errorf("-k not applied: %v", err)
	}
	for _, c := range []struct {
		ctl  config.Ctl
		api  config.RESTAPI
		want string
	}{
		{config.Ctl{CACert: "/nonexistent/ca.pem"}, config.RESTAPI{CAFile: ca.CertFile}, "ctl.cacert"},
		{config.Ctl{}, config.RESTAPI{CAFile: "/nonexistent/ca.pem"}, "restapi.cafile"},
		{config.Ctl{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/c.key"}, config.RESTAPI{}, "ctl.certfile"},
	} {
		if _, err := ClientTLS(c.ctl, c.api, false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ClientTLS(%+v, %+v) err = %v, want it to name %s", c.ctl, c.api, err, c.want)
		}
	}
	// A file without PEM is named too.
	notPEM := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientTLS(config.Ctl{CACert: notPEM}, config.RESTAPI{}, false); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("not-PEM cacert err = %v", err)
	}
}

func TestHostPolicy(t *testing.T) {
	h := newHostPolicy(config.RESTAPI{Listen: "0.0.0.0:8008", ConnectAddress: "DB1.example.com:8008"})
	for host, want := range map[string]bool{
		"":                           true, // HTTP/1.0 tools send no Host
		"127.0.0.1":                  true,
		"127.0.0.1:8008":             true,
		"[::1]:8008":                 true,
		"[::1]":                      true,
		"[fe80::1%eth0]:8008":        true,
		"192.0.2.7:8008":             true,
		"localhost:8008":             true,
		"db1.example.com:8008":       true,
		"db1.example.com.:9999":      true,
		"evil.example:8008":          false,
		"127.0.0.1.evil.example":     false,
		"2130706433:8008":            false, // browsers normalise this to 127.0.0.1
		"localhost.evil.example":     false,
		"db1.example.com.evil:1":     false,
		"0.0.0.0:8008":               true, // the listen host, and an IP
		"db1.example.com:8008:extra": false,
	} {
		if got := h.allowed(host); got != want {
			t.Errorf("allowed(%q) = %v, want %v", host, got, want)
		}
	}
}
