package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// ClusterNode is one nats-server of a cluster run with the checked-in
// nats/cluster.conf, as `task run:cluster` runs it, on free loopback ports.
type ClusterNode struct {
	*Proc
	Name       string
	Port       int
	URL        string // nats://127.0.0.1:<port>
	MonitorURL string // http://127.0.0.1:<monitoring port>
}

// StartNATSCluster starts n nodes with nats/cluster.conf and waits until
// every one reports JetStream healthy (/healthz), which needs a meta leader
// and so the routes between them.
func StartNATSCluster(t testing.TB, n int) []*ClusterNode {
	t.Helper()
	return StartNATSClusterWith(t, n, "../nats/cluster.conf", nil)
}

// StartNATSClusterWith is StartNATSCluster with another configuration
// file (nats/secured/cluster.conf) and extra environment for every node.
func StartNATSClusterWith(t testing.TB, n int, confFile string, extra map[string]string) []*ClusterNode {
	t.Helper()
	for attempt := 1; ; attempt++ {
		nodes := startNATSCluster(t, n, confFile, extra)
		taken := false
		check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
			up := true
			for _, nd := range nodes {
				if portTaken(nd.Proc) {
					taken = true
					return nil
				}
				up = up && dialOK(strings.TrimPrefix(nd.URL, "nats://"))
			}
			if !up {
				return fmt.Errorf("the NATS nodes did not listen")
			}
			return nil
		})
		if !taken {
			for _, nd := range nodes {
				nd.WaitHealthy(t, 60*time.Second)
			}
			return nodes
		}
		for _, nd := range nodes {
			nd.Stop()
		}
		if attempt == 3 {
			t.Fatal("the NATS nodes' ports were taken three times over")
		}
	}
}

// portTaken reports whether p exited because a port it was given was taken
// after FreePort found it free (say by another process's outgoing
// connection): then the caller starts it again on other ports.
func portTaken(p *Proc) bool {
	return !p.Running() && strings.Contains(strings.ToLower(p.Logs()), "address already in use")
}

func startNATSCluster(t testing.TB, n int, confFile string, extra map[string]string) []*ClusterNode {
	t.Helper()
	conf, err := filepath.Abs(confFile)
	if err != nil {
		t.Fatal(err)
	}
	clusterPorts := make([]int, n)
	routes := make([]string, n)
	for i := range n {
		clusterPorts[i] = FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", clusterPorts[i])
	}
	nodes := make([]*ClusterNode, n)
	for i := range n {
		port, mon := FreePort(t), FreePort(t)
		nd := &ClusterNode{
			Name:       fmt.Sprintf("nats-%d", i+1),
			Port:       port,
			URL:        fmt.Sprintf("nats://127.0.0.1:%d", port),
			MonitorURL: fmt.Sprintf("http://127.0.0.1:%d", mon),
		}
		env := map[string]string{
			"NATS_SERVER_NAME":    nd.Name,
			"NATS_LISTEN":         fmt.Sprintf("127.0.0.1:%d", port),
			"NATS_MONITOR_LISTEN": fmt.Sprintf("127.0.0.1:%d", mon),
			"NATS_CLUSTER_LISTEN": fmt.Sprintf("127.0.0.1:%d", clusterPorts[i]),
			"NATS_ROUTES":         "[" + strings.Join(routes, ", ") + "]",
			// Quoted: nats-server reads the value as configuration text.
			"NATS_STORE_DIR": strconv.Quote(t.TempDir()),
		}
		for k, v := range extra {
			env[k] = v
		}
		nd.Proc = StartProc(t, nd.Name, bin.natsServer, []string{"-c", conf}, env)
		nodes[i] = nd
	}
	return nodes
}

// startServer starts an edge or ingest whose port is env[portKey], again
// on another port if that one was taken meanwhile.
func startServer(t testing.TB, name, binary string, env map[string]string, portKey string) *Server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port, _ := strconv.Atoi(env[portKey])
		s := &Server{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		s.Proc = StartProc(t, name, binary, nil, env)
		check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
			if s.Running() && !dialOK(fmt.Sprintf("127.0.0.1:%d", port)) {
				return fmt.Errorf("%s did not listen", name)
			}
			return nil
		})
		if !portTaken(s.Proc) {
			return s
		}
		if attempt == 3 {
			t.Fatalf("%s: ports taken three times over", name)
		}
		env[portKey] = strconv.Itoa(FreePort(t))
	}
}

// Healthy reports whether the node's /healthz answers 200: it serves
// clients and its JetStream is current with the cluster.
func (n *ClusterNode) Healthy() bool {
	return status(n.MonitorURL+"/healthz") == 200
}

// WaitHealthy waits until Healthy, failing the test if the node exits.
func (n *ClusterNode) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	check.For(t, timeout, 10*time.Millisecond, func() error {
		if !n.Running() {
			t.Fatalf("%s exited: %v\n%s", n.Name, n.err, n.Logs())
		}
		if !n.Healthy() {
			return fmt.Errorf("%s not healthy (/healthz)", n.Name)
		}
		return nil
	})
}

// Routes returns the names of the nodes this node has routes to, from its
// monitoring endpoint /routez.
func (n *ClusterNode) Routes(t testing.TB) map[string]bool {
	t.Helper()
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	r := Do(t, "GET", n.MonitorURL+"/routez", "", nil)
	r.JSON(t, &rz)
	out := map[string]bool{}
	for _, r := range rz.Routes {
		out[r.RemoteName] = true
	}
	return out
}

// ClientNames returns the names of the NATS clients connected to this node
// (rig-edge, rig-ingest, ...), from /connz.
func (n *ClusterNode) ClientNames(t testing.TB) []string {
	t.Helper()
	var cz struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	Do(t, "GET", n.MonitorURL+"/connz", "", nil).JSON(t, &cz)
	var out []string
	for _, c := range cz.Connections {
		out = append(out, c.Name)
	}
	return out
}

// Topology is what `task run:cluster` runs, on free loopback ports: three
// NATS nodes with nats/secured/cluster.conf (TLS, a user per role), edge-1
// on nats-1, edge-2 on nats-2, ingest on nats-3 (so messages cross the
// cluster), and nginx in front of the edges.
type Topology struct {
	NATS   []*ClusterNode
	Edges  []*Server
	Ingest *Server
	LB     *Nginx
	Secure *Secure // the certificates and NKeys the nodes and processes use
}

// StartTopology starts the topology; extraEdge and extraIngest are added
// to the edges' and ingest's environments. It skips the test when nginx is
// not installed (outside CI).
func StartTopology(t testing.TB, extraEdge, extraIngest map[string]string) *Topology {
	t.Helper()
	nginx := NginxPath(t)
	sec := GenSecure(t)
	nodes := StartNATSClusterWith(t, 3, "../nats/secured/cluster.conf", sec.ServerEnv())
	edgeEnv, ingestEnv := sec.ClientEnv("edge"), sec.ClientEnv("ingest")
	for k, v := range extraEdge {
		edgeEnv[k] = v
	}
	for k, v := range extraIngest {
		ingestEnv[k] = v
	}
	top := startTopology(t, nginx, nodes, edgeEnv, ingestEnv)
	top.Secure = sec
	return top
}

// startTopology starts the edges, ingest and nginx of a topology on nodes.
func startTopology(t testing.TB, nginx string, nodes []*ClusterNode, extraEdge, extraIngest map[string]string) *Topology {
	t.Helper()
	top := &Topology{NATS: nodes}
	// Ingest first: on a secured cluster (nats/secured) only ingest may
	// create the stream and the buckets the edges wait for.
	env := IngestEnv(FreePort(t), nodes[2].URL)
	env["NATS_CLIENT_NAME"] = "ingest"
	for k, v := range extraIngest {
		env[k] = v
	}
	top.Ingest = startServer(t, "ingest", bin.ingest, env, "API_PORT")
	for i := range 2 {
		env := EdgeEnv(FreePort(t), nodes[i].URL)
		env["EDGE_ID"] = fmt.Sprintf("edge-%d", i+1)
		env["NATS_CLIENT_NAME"] = env["EDGE_ID"]
		for k, v := range extraEdge {
			env[k] = v
		}
		top.Edges = append(top.Edges, startServer(t, env["EDGE_ID"], bin.edge, env, "INBOUND_PORT"))
	}
	// On a fresh cluster the three processes race to create the stream and
	// the buckets, which takes a few attempts: wait longer than WaitReady.
	for _, s := range append(append([]*Server{}, top.Edges...), top.Ingest) {
		waitReady(t, s, 90*time.Second)
	}
	top.LB = StartNginx(t, nginx, top.Edges...)
	return top
}

// Node returns the cluster node named name.
func (top *Topology) Node(t testing.TB, name string) *ClusterNode {
	t.Helper()
	for _, n := range top.NATS {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no NATS node %q", name)
	return nil
}

// Nginx is an nginx process in front of edges, run with the checked-in
// deploy/nginx configuration on free ports.
type Nginx struct {
	*Proc
	Port int
	URL  string
}

// NginxPath returns the nginx binary. Without one the test is skipped, or
// fails in CI, whose .ci/run installs it.
func NginxPath(t testing.TB) string {
	t.Helper()
	if p := nginxBinary(); p != "" {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed; .ci/run should have installed it")
	}
	t.Skip("nginx is not installed (apt-get install nginx): skipping the test through the load balancer")
	return ""
}

// nginxBinary returns nginx's path, or "" when it is not installed.
func nginxBinary() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// writeNginxConfig writes nginxConf as dir/nginx.conf and
// deploy/nginx/locations.conf, which it includes, beside it.
func writeNginxConfig(t testing.TB, dir, nginxConf string) {
	t.Helper()
	locations, err := os.ReadFile("../deploy/nginx/locations.conf")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"nginx.conf": []byte(nginxConf), "locations.conf": locations} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// StartNginx runs nginx with deploy/nginx/nginx.conf, its listen address
// and upstream servers moved to free ports and the two edges given, and
// deploy/nginx/locations.conf as it is.
func StartNginx(t testing.TB, nginx string, edges ...*Server) *Nginx {
	t.Helper()
	return startNginxWith(t, nginx, "", edges...)
}

// startNginxWith is StartNginx with extra placed in nginx's server block
// before deploy/nginx/locations.conf: an exact location there overrides
// the checked-in one for that path.
func startNginxWith(t testing.TB, nginx, extra string, edges ...*Server) *Nginx {
	t.Helper()
	if len(edges) != 2 {
		t.Fatalf("StartNginx: %d edges, deploy/nginx/nginx.conf has 2", len(edges))
	}
	conf, err := os.ReadFile("../deploy/nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	return startNginxConf(t, nginx, "nginx", nginxDir(t, "rig-nginx-"), func(port int) string {
		text := string(conf)
		moves := [][2]string{
			{"listen 127.0.0.1:4000;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
			{"server 127.0.0.1:4001 ", fmt.Sprintf("server 127.0.0.1:%d ", edges[0].Port)},
			{"server 127.0.0.1:4002 ", fmt.Sprintf("server 127.0.0.1:%d ", edges[1].Port)},
		}
		if extra != "" {
			moves = append(moves, [2]string{"include locations.conf;", extra + "\n        include locations.conf;"})
		}
		for _, r := range moves {
			if n := strings.Count(text, r[0]); n != 1 {
				t.Fatalf("deploy/nginx/nginx.conf has %q %d times, want once", r[0], n)
			}
			text = strings.Replace(text, r[0], r[1], 1)
		}
		return text
	})
}

// nginxDir makes a directory for nginx to run in, removed when the test
// ends. Not t.TempDir: when the test runs as root, nginx's workers run as
// an unprivileged user, and must traverse it.
func nginxDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startNginxConf runs nginx (as name, in its logs) in dir with conf(port)
// for a free port, written as dir/nginx.conf beside deploy/nginx's
// locations.conf (see writeNginxConfig), and returns once it listens
// there. A port another process took in the meantime is tried again with
// another, up to 3 times.
func startNginxConf(t testing.TB, nginx, name, dir string, conf func(port int) string) *Nginx {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		writeNginxConfig(t, dir, conf(port))
		n := &Nginx{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		n.Proc = StartProc(t, name, nginx,
			[]string{"-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;"}, nil)
		check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n.Running() && !dialOK(fmt.Sprintf("127.0.0.1:%d", port)) {
				return fmt.Errorf("nginx did not listen on %d", port)
			}
			return nil
		})
		if n.Running() {
			return n
		}
		if !portTaken(n.Proc) || attempt == 3 {
			t.Fatalf("nginx exited: %v\n%s", n.err, n.Logs())
		}
	}
}

// healthJSON reads a server's GET /health body.
func healthJSON(t testing.TB, base string) map[string]any {
	t.Helper()
	var h map[string]any
	r := Do(t, "GET", base+"/health", "", nil)
	if err := json.Unmarshal(r.Body, &h); err != nil {
		t.Fatalf("GET %s/health: %d %q", base, r.Status, r.Body)
	}
	return h
}
