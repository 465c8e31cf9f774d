package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// defaultPassword is docker-compose.yml's POSTGRES_PASSWORD default.
const defaultPassword = "pgha-compose"

// commandTimeout bounds one docker or docker-compose command (down waits
// for every node's clean stop).
const commandTimeout = 3 * time.Minute

// stack is one docker-compose project of the repository's compose file.
type stack struct {
	t       *testing.T
	root    string // the repository: docker-compose.yml and docker/
	project string
	down    bool              // down -v has run
	ids     map[string]string // service -> container id, read once
}

// newStack names a project and registers its removal (down -v, volumes
// included) for the end of the test, whatever happens.
func newStack(t *testing.T) *stack {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatalf("no docker-compose.yml at the repository root: %v", err)
	}
	project := os.Getenv("COMPOSE_PROJECT_NAME")
	if project == "" {
		project = fmt.Sprintf("pgha-test-%d", os.Getpid())
	}
	s := &stack{t: t, root: root, project: project, ids: map[string]string{}}
	t.Cleanup(func() {
		if s.down {
			return
		}
		if t.Failed() {
			s.saveLogs()
		}
		if out, err := s.compose("down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("cleanup: docker-compose down -v: %v\n%s", err, out)
		}
	})
	return s
}

// run runs a command bounded by commandTimeout and returns its combined
// output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.String(), err
}

func (s *stack) compose(args ...string) (string, error) {
	base := []string{"-p", s.project, "-f", filepath.Join(s.root, "docker-compose.yml"), "--ansi", "never"}
	return run("docker-compose", append(base, args...)...)
}

func (s *stack) mustCompose(args ...string) string {
	s.t.Helper()
	out, err := s.compose(args...)
	if err != nil {
		s.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// container is the id of a service's container, read while it runs and
// kept (it stays the same across docker kill and docker start).
func (s *stack) container(service string) string {
	s.t.Helper()
	if id, ok := s.ids[service]; ok {
		return id
	}
	id := strings.TrimSpace(s.mustCompose("ps", "-q", service))
	if id == "" || strings.Contains(id, "\n") {
		s.t.Fatalf("service %s: want one container, docker-compose ps -q says %q", service, id)
	}
	s.ids[service] = id
	return id
}

// hostPort is the 127.0.0.1:port Docker published a service's port on.
func (s *stack) hostPort(service string, port int) string {
	s.t.Helper()
	out := strings.TrimSpace(s.mustCompose("port", service, fmt.Sprint(port)))
	if out == "" || strings.HasSuffix(out, ":0") {
		s.t.Fatalf("%s's port %d is not published (%q)", service, port, out)
	}
	return out
}

// exec runs a command inside a service's container (docker exec).
func (s *stack) exec(service string, env []string, args ...string) (string, error) {
	cmd := []string{"exec"}
	for _, e := range env {
		cmd = append(cmd, "-e", e)
	}
	cmd = append(cmd, s.container(service))
	return run("docker", append(cmd, args...)...)
}

// member is one row of `pghactl list -f json`.
type member struct {
	Member string `json:"Member"`
	Role   string `json:"Role"`
	State  string `json:"State"`
	TL     int    `json:"TL"`
}

// members runs pghactl list inside a node's container.
func (s *stack) members(via string) ([]member, error) {
	out, err := s.exec(via, nil, "pghactl", "list", "-f", "json")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	var ms []member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("pghactl list -f json: %w: %q", err, out)
	}
	return ms, nil
}

// clusterState is the cluster as one node's pghactl sees it.
type clusterState struct {
	leader   string
	timeline int
	sync     string
	streamed map[string]bool // replicas that stream
	members  []member
}

func (c clusterState) String() string {
	var b strings.Builder
	for _, m := range c.members {
		fmt.Fprintf(&b, "%s=%s/%s/TL%d ", m.Member, m.Role, m.State, m.TL)
	}
	return strings.TrimSpace(b.String())
}

func (s *stack) state(via string) (clusterState, error) {
	ms, err := s.members(via)
	if err != nil {
		return clusterState{}, err
	}
	c := clusterState{members: ms, streamed: map[string]bool{}}
	for _, m := range ms {
		switch m.Role {
		case "Leader":
			if m.State == "running" {
				c.leader, c.timeline = m.Member, m.TL
			}
		case "Sync Standby":
			c.sync = m.Member
		}
		if m.Role != "Leader" && m.State == "streaming" {
			c.streamed[m.Member] = true
		}
	}
	return c, nil
}

// waitFor polls cond every 500 ms until it returns "" or d passes, and
// fails the test with cond's last answer.
func (s *stack) waitFor(d time.Duration, what string, cond func() string) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		if last = cond(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %s waiting for %s: %s", d, what, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// psql runs one query as postgres on a node's own Postgres (its loopback
// port, inside the container) and returns the unaligned rows.
func (s *stack) psql(service, password, query string) (string, error) {
	out, err := s.exec(service, []string{"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=5"},
		"psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", query)
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return out, nil
}

// etcdLeader is the etcd service whose member leads the etcd cluster
// (etcd_server_is_leader 1 on its /metrics).
func (s *stack) etcdLeader() (string, error) {
	for _, svc := range []string{"etcd1", "etcd2", "etcd3"} {
		out, err := s.exec(svc, nil, "bash", "-c",
			`exec 3<>/dev/tcp/127.0.0.1/2379 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && timeout 5 grep '^etcd_server_is_leader ' <&3`)
		if err == nil && strings.TrimSpace(out) == "etcd_server_is_leader 1" {
			return svc, nil
		}
	}
	return "", fmt.Errorf("no etcd member reports etcd_server_is_leader 1")
}

// saveLogs writes every service's log to a file and names it.
func (s *stack) saveLogs() {
	out, _ := s.compose("logs", "--no-color", "--timestamps")
	f, err := os.CreateTemp("", s.project+"-logs-*.txt")
	if err != nil {
		s.t.Logf("cannot save the stack's logs: %v", err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString(out)
	s.t.Logf("the stack's logs: %s", f.Name())
}

// tearDown is `docker-compose down -v` and the check that nothing of the
// project is left: no container, volume or network with its label.
func (s *stack) tearDown() time.Duration {
	s.t.Helper()
	if s.t.Failed() {
		s.saveLogs()
	}
	start := time.Now()
	s.mustCompose("down", "-v", "--remove-orphans")
	took := time.Since(start)
	s.down = true
	label := "label=com.docker.compose.project=" + s.project
	for _, kind := range [][]string{{"ps", "-a", "-q"}, {"volume", "ls", "-q"}, {"network", "ls", "-q"}} {
		out, err := run("docker", append(kind, "--filter", label)...)
		if err != nil {
			s.t.Fatalf("%v\n%s", err, out)
		}
		if left := strings.TrimSpace(out); left != "" {
			s.t.Errorf("after down -v, docker %s still lists: %s", kind[0], strings.ReplaceAll(left, "\n", " "))
		}
	}
	return took
}
