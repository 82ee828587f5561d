package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The files in deploy/ cannot run here (no Docker engine, no Kubernetes):
// these tests check what can be checked without them: every YAML file
// parses; the settings they give the binaries exist; ports, probes, labels
// and names agree with each other and with the topology the e2e tests run.

// yamlDocs parses every document of a YAML file.
func yamlDocs(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d == nil {
			t.Fatalf("%s: an empty document", path)
		}
		docs = append(docs, d)
	}
}

// at walks a parsed YAML value by map keys and list indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// settingsOf returns the environment variables a binary's --help lists.
func settingsOf(t testing.TB, binary string) map[string]bool {
	t.Helper()
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", binary, err, out)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --[a-z0-9-]+, ([A-Z0-9_]+)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 10 {
		t.Fatalf("%s --help lists %d settings: %s", binary, len(names), out)
	}
	return names
}

// checkSettings fails for every name the binary does not know.
func checkSettings(t testing.TB, where string, known map[string]bool, env map[string]string) {
	t.Helper()
	for name := range env {
		if !known[name] {
			t.Errorf("%s sets %s, which --help does not list", where, name)
		}
	}
}

// k8sEnv returns a container's environment; values from elsewhere
// (secrets, the pod) are "<ref>".
func k8sEnv(c any) map[string]string {
	env := map[string]string{}
	for _, e := range at(c, "env").([]any) {
		v := str(at(e, "value"))
		if at(e, "valueFrom") != nil {
			v = "<ref>"
		}
		env[str(at(e, "name"))] = v
	}
	return env
}

// containerPorts maps a container's port names to numbers.
func containerPorts(c any) map[string]int {
	ports := map[string]int{}
	for _, p := range at(c, "ports").([]any) {
		ports[str(at(p, "name"))] = at(p, "containerPort").(int)
	}
	return ports
}

func seconds(t testing.TB, d string) int {
	t.Helper()
	v, err := time.ParseDuration(d)
	if err != nil {
		t.Fatalf("duration %q: %v", d, err)
	}
	return int(v.Seconds())
}

// TestDeployKubernetes checks deploy/k8s.
func TestDeployKubernetes(t *testing.T) {
	edgeSettings, ingestSettings := settingsOf(t, bin.edge), settingsOf(t, bin.ingest)
	objs := map[string]map[string]any{} // kind/name
	files := map[string]bool{}
	paths, _ := filepath.Glob("../deploy/k8s/*.yaml")
	for _, p := range paths {
		base := filepath.Base(p)
		if base == "kustomization.yaml" || base == "nats-values.yaml" {
			continue
		}
		files[base] = true
		for _, d := range yamlDocs(t, p) {
			kind, name := str(d["kind"]), str(at(d, "metadata", "name"))
			if str(d["apiVersion"]) == "" || kind == "" || name == "" {
				t.Fatalf("%s: a document without apiVersion, kind or metadata.name", p)
			}
			objs[kind+"/"+name] = d
		}
	}
	kust := yamlDocs(t, "../deploy/k8s/kustomization.yaml")[0]
	var listed []string
	for _, r := range at(kust, "resources").([]any) {
		listed = append(listed, str(r))
	}
	for f := range files {
		if !slices.Contains(listed, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
	for _, f := range listed {
		if !files[f] {
			t.Errorf("kustomization.yaml lists %s, which is not in deploy/k8s", f)
		}
	}
	get := func(key string) map[string]any {
		o := objs[key]
		if o == nil {
			t.Fatalf("deploy/k8s has no %s", key)
		}
		return o
	}

	type probeWant struct{ probe, path, port string }
	checkDeployment := func(name string, known map[string]bool, portEnv map[string]string, probes []probeWant) (map[string]any, map[string]string) {
		d := get("Deployment/" + name)
		labels := at(d, "spec", "template", "metadata", "labels").(map[string]any)
		for k, v := range at(d, "spec", "selector", "matchLabels").(map[string]any) {
			if labels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pod's labels", name, k, v)
			}
		}
		c := at(d, "spec", "template", "spec", "containers", 0)
		env := k8sEnv(c)
		checkSettings(t, "deploy/k8s Deployment "+name, known, env)
		ports := containerPorts(c)
		for portName, setting := range portEnv {
			if strconv.Itoa(ports[portName]) != env[setting] {
				t.Errorf("%s: container port %q is %d, %s is %q", name, portName, ports[portName], setting, env[setting])
			}
		}
		for _, p := range probes {
			if got := str(at(c, p.probe, "httpGet", "path")); got != p.path {
				t.Errorf("%s: %s path %q, want %q", name, p.probe, got, p.path)
			}
			if got := str(at(c, p.probe, "httpGet", "port")); got != p.port {
				t.Errorf("%s: %s port %q, want %q", name, p.probe, got, p.port)
			}
		}
		if at(c, "securityContext", "allowPrivilegeEscalation") != false || at(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: not locked down (runAsNonRoot, allowPrivilegeEscalation)", name)
		}
		return d, env
	}
	edge, edgeEnv := checkDeployment("rig-edge", edgeSettings,
		map[string]string{"http": "INBOUND_PORT", "ops": "METRICS_PORT"},
		[]probeWant{{"livenessProbe", "/health", "ops"}, {"readinessProbe", "/health/ready", "ops"}, {"startupProbe", "/health", "ops"}})
	checkDeployment("rig-ingest", ingestSettings,
		map[string]string{"http": "API_PORT"},
		[]probeWant{{"livenessProbe", "/health", "http"}, {"readinessProbe", "/health/ready", "http"}})

	// The edge's drain fits in the grace period: the preStop pause, then
	// DRAIN_TIMEOUT, then the edge's own 5s margin to shut down.
	grace := at(edge, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	preStop := at(edge, "spec", "template", "spec", "containers", 0, "lifecycle", "preStop", "sleep", "seconds").(int)
	if drain := seconds(t, edgeEnv["DRAIN_TIMEOUT"]); preStop+drain+5 > grace {
		t.Errorf("edge: preStop %ds + DRAIN_TIMEOUT %ds + 5s > terminationGracePeriodSeconds %d", preStop, drain, grace)
	}

	for _, svc := range []struct{ service, deployment string }{{"rig-edge", "rig-edge"}, {"rig-ingest", "rig-ingest"}} {
		s, d := get("Service/"+svc.service), get("Deployment/"+svc.deployment)
		labels := at(d, "spec", "template", "metadata", "labels").(map[string]any)
		for k, v := range at(s, "spec", "selector").(map[string]any) {
			if labels[k] != v {
				t.Errorf("Service %s selects %s=%v, not on %s's pods", svc.service, k, v, svc.deployment)
			}
		}
		ports := containerPorts(at(d, "spec", "template", "spec", "containers", 0))
		for _, p := range at(s, "spec", "ports").([]any) {
			if _, ok := ports[str(at(p, "targetPort"))]; !ok {
				t.Errorf("Service %s: targetPort %v is no port of %s", svc.service, at(p, "targetPort"), svc.deployment)
			}
		}
	}
	if str(at(get("Service/rig-ingest"), "spec", "type")) != "ClusterIP" {
		t.Errorf("ingest's Service must stay inside the cluster (ClusterIP)")
	}
	edgeLabels := at(edge, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range at(get("PodDisruptionBudget/rig-edge"), "spec", "selector", "matchLabels").(map[string]any) {
		if edgeLabels[k] != v {
			t.Errorf("PodDisruptionBudget selects %s=%v, not on the edges", k, v)
		}
	}
	hpa := get("HorizontalPodAutoscaler/rig-edge")
	if ref := at(hpa, "spec", "scaleTargetRef"); str(at(ref, "kind")) != "Deployment" || str(at(ref, "name")) != "rig-edge" {
		t.Errorf("HorizontalPodAutoscaler scales %v, want Deployment rig-edge", ref)
	}
	if min, _ := at(hpa, "spec", "minReplicas").(int); min < 2 {
		t.Errorf("HorizontalPodAutoscaler minReplicas %d: one edge is no failover", min)
	}
	if b := at(get("Ingress/rig-edge"), "spec", "rules", 0, "http", "paths", 0, "backend", "service"); str(at(b, "name")) != "rig-edge" {
		t.Errorf("Ingress sends to %v, want the rig-edge Service", b)
	}

	// NATS from the official Helm chart: three JetStream nodes, the
	// nats-server version of go.mod.
	v := yamlDocs(t, "../deploy/k8s/nats-values.yaml")[0]
	if at(v, "config", "cluster", "enabled") != true || at(v, "config", "cluster", "replicas") != 3 ||
		at(v, "config", "jetstream", "enabled") != true || at(v, "config", "jetstream", "fileStore", "enabled") != true {
		t.Errorf("nats-values.yaml: want a 3-node cluster with JetStream file storage: %v", at(v, "config"))
	}
	if tag, want := str(at(v, "container", "image", "tag")), natsVersion(t); !strings.HasPrefix(tag, want) {
		t.Errorf("nats-values.yaml: image tag %q, go.mod's nats-server is %s", tag, want)
	}

	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", "../deploy/k8s").CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
		} else {
			t.Logf("kubectl kustomize deploy/k8s: %d bytes", len(out))
		}
	}
}

// natsVersion is the nats-server version go.mod requires, without the v.
func natsVersion(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod requires no nats-server")
	}
	return string(m[1])
}

// composeEnv returns a compose service's environment (a map or a list).
func composeEnv(t testing.TB, svc any) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch e := at(svc, "environment").(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = str(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(str(kv), "=")
			env[k] = v
		}
	}
	return env
}

// TestDeployCompose checks deploy/docker-compose.yml and its nginx.
func TestDeployCompose(t *testing.T) {
	edgeSettings, ingestSettings := settingsOf(t, bin.edge), settingsOf(t, bin.ingest)
	c := yamlDocs(t, "../deploy/docker-compose.yml")[0]
	services := at(c, "services").(map[string]any)
	var names []string
	for n := range services {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"edge-1", "edge-2", "ingest", "nats-1", "nats-2", "nats-3", "nginx"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want the topology of task run:cluster %v", names, want)
	}
	dockerfile, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range services {
		if target := str(at(svc, "build", "target")); target != "" && !strings.Contains(string(dockerfile), " AS "+target+"\n") {
			t.Errorf("%s builds Dockerfile target %q, which deploy/Dockerfile does not have", name, target)
		}
	}

	// Three NATS nodes with nats/cluster.conf, routed to each other.
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		svc := services[n]
		env := composeEnv(t, svc)
		if env["NATS_SERVER_NAME"] != n {
			t.Errorf("%s: NATS_SERVER_NAME %q", n, env["NATS_SERVER_NAME"])
		}
		for _, peer := range []string{"nats-1", "nats-2", "nats-3"} {
			if !strings.Contains(env["NATS_ROUTES"], "nats://"+peer+":6222") {
				t.Errorf("%s: NATS_ROUTES %q lacks %s", n, env["NATS_ROUTES"], peer)
			}
		}
		if !slices.Contains(at(svc, "volumes").([]any), any("../nats:/etc/nats:ro")) || !strings.Contains(str(at(svc, "command")), "/etc/nats/cluster.conf") {
			t.Errorf("%s does not run nats/cluster.conf: volumes %v, command %v", n, at(svc, "volumes"), at(svc, "command"))
		}
	}
	// Edges and ingest: known settings, NATS URLs of the compose nodes.
	natsHosts := regexp.MustCompile(`^nats://(nats-[123]):4222$`)
	edgePorts := map[string]string{}
	for _, n := range []string{"edge-1", "edge-2", "ingest"} {
		env := composeEnv(t, services[n])
		known := edgeSettings
		if n == "ingest" {
			known = ingestSettings
		}
		checkSettings(t, "docker-compose.yml "+n, known, env)
		for _, u := range strings.Split(env["NATS_URL"], ",") {
			if !natsHosts.MatchString(u) {
				t.Errorf("%s: NATS_URL member %q is not a compose NATS node", n, u)
			}
		}
		if n != "ingest" {
			edgePorts[n] = env["INBOUND_PORT"]
			if env["EDGE_ID"] != n {
				t.Errorf("%s: EDGE_ID %q", n, env["EDGE_ID"])
			}
			if grace := seconds(t, str(at(services[n], "stop_grace_period"))); seconds(t, env["DRAIN_TIMEOUT"])+5 > grace {
				t.Errorf("%s: DRAIN_TIMEOUT %s + 5s > stop_grace_period %ds", n, env["DRAIN_TIMEOUT"], grace)
			}
		}
	}
	// nginx: deploy/nginx/locations.conf, upstreams at the edges' ports.
	nginxSvc := services["nginx"]
	vols := at(nginxSvc, "volumes").([]any)
	if !slices.Contains(vols, any("./compose/nginx.conf:/etc/nginx/nginx.conf:ro")) || !slices.Contains(vols, any("./nginx/locations.conf:/etc/nginx/locations.conf:ro")) {
		t.Errorf("nginx volumes %v: want compose/nginx.conf and nginx/locations.conf", vols)
	}
	conf, err := os.ReadFile("../deploy/compose/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	for edge, port := range edgePorts {
		if !strings.Contains(string(conf), "server "+edge+":"+port+" ") {
			t.Errorf("compose/nginx.conf has no upstream server %s:%s", edge, port)
		}
	}
	// Everything but the upstream addresses as deploy/nginx/nginx.conf:
	// nginx accepts it with the edges on loopback.
	if nginx := nginxBinary(); nginx != "" {
		dir := t.TempDir()
		text := strings.NewReplacer("edge-1:", "127.0.0.1:", "edge-2:", "127.0.0.1:", "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", FreePort(t))).Replace(string(conf))
		writeNginxConfig(t, dir, text)
		if out, err := exec.Command(nginx, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr").CombinedOutput(); err != nil {
			t.Errorf("nginx -t on compose/nginx.conf (edges on loopback): %v\n%s", err, out)
		}
	}

	// Where the compose plugin is installed, it checks the file itself
	// (no engine needed). Not on this project's machines: say so.
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd := exec.Command("docker", "compose", "-f", "../deploy/docker-compose.yml", "config", "--quiet")
		cmd.Env = append(os.Environ(), "JWT_SECRET_KEY=compose-config-check", "API_TOKENS=compose-config-check-token")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker compose config: %v\n%s", err, out)
		}
	} else {
		t.Log("docker compose is not installed: the compose file was checked by this test only")
	}
}

// TestDeployDockerfile checks what can be read off deploy/Dockerfile: Go
// of go.mod, static binaries, distroless final stages run as non-root.
func TestDeployDockerfile(t *testing.T) {
	b, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	mod, _ := os.ReadFile("../go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(mod)
	if goVersion == nil || !strings.Contains(text, "ARG GO_VERSION="+string(goVersion[1])+"\n") {
		t.Errorf("Dockerfile's GO_VERSION is not go.mod's go %s", goVersion[1])
	}
	// The images carry the binaries: built by the toolchain the Taskfile
	// builds and scans with, not by the image's older Go.
	taskfile, _ := os.ReadFile("../Taskfile.yml")
	toolchain := regexp.MustCompile(`(?m)^  GOTOOLCHAIN: *(\S+)$`).FindSubmatch(taskfile)
	if toolchain == nil {
		t.Error("Taskfile.yml's env names no GOTOOLCHAIN")
	} else if !strings.Contains(text, "ENV GOTOOLCHAIN="+string(toolchain[1])+"\n") {
		t.Errorf("Dockerfile does not build with the Taskfile's GOTOOLCHAIN %s", toolchain[1])
	}
	if !strings.Contains(text, "ENV CGO_ENABLED=0") {
		t.Error("Dockerfile does not build static binaries (CGO_ENABLED=0)")
	}
	// Each final stage: FROM distroless ... AS <target>, then USER nonroot.
	stages := regexp.MustCompile(`(?m)^FROM (\S+) AS (\S+)$`).FindAllStringSubmatchIndex(text, -1)
	targets := map[string]bool{}
	for i, s := range stages {
		image, name := text[s[2]:s[3]], text[s[4]:s[5]]
		end := len(text)
		if i+1 < len(stages) {
			end = stages[i+1][0]
		}
		body := text[s[1]:end]
		if name == "build" {
			continue
		}
		targets[name] = true
		if !strings.HasPrefix(image, "gcr.io/distroless/static") || !strings.Contains(body, "\nUSER nonroot:nonroot\n") {
			t.Errorf("stage %s: FROM %s; want distroless/static and USER nonroot", name, image)
		}
		if !strings.Contains(body, "COPY --from=build /out/") {
			t.Errorf("stage %s copies no binary from the build stage", name)
		}
	}
	for _, want := range []string{"edge", "ingest", "nats"} {
		if !targets[want] {
			t.Errorf("Dockerfile has no target %s", want)
		}
	}
}

// TestDeployYAML: every YAML file in deploy/ parses.
func TestDeployYAML(t *testing.T) {
	n := 0
	err := filepath.WalkDir("../deploy", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
			n += len(yamlDocs(t, p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d YAML documents in deploy/", n)
}

// TestDeployProbePaths: every HTTP probe of deploy/k8s answers 200 on the
// port it names, on a ready edge and ingest started as the e2e tests start
// them. The edge's probes use its ops port (METRICS_PORT), ingest's its API
// port. The public ports answer the same paths too (RIG's GET /health).
func TestDeployProbePaths(t *testing.T) {
	st := StartStack(t, nil, nil)
	if st.Edge.OpsURL == "" {
		t.Fatal("the test edge has no ops port (METRICS_PORT)")
	}
	// Each deployment's container ports, by name, as the test runs them.
	bases := map[string]map[string]string{
		"rig-edge":   {"http": st.Edge.URL, "ops": st.Edge.OpsURL},
		"rig-ingest": {"http": st.Ingest.URL},
	}
	probed := map[string]bool{}
	for _, file := range []string{"edge-deployment.yaml", "ingest-deployment.yaml"} {
		for _, d := range yamlDocs(t, "../deploy/k8s/"+file) {
			name := str(at(d, "metadata", "name"))
			if str(d["kind"]) != "Deployment" || bases[name] == nil {
				continue
			}
			c := at(d, "spec", "template", "spec", "containers", 0)
			byNumber := map[string]string{}
			for portName, n := range containerPorts(c) {
				byNumber[strconv.Itoa(n)] = portName
			}
			for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
				get := at(c, probe, "httpGet")
				if get == nil {
					continue
				}
				path, port := str(at(get, "path")), str(at(get, "port"))
				if byNumber[port] != "" {
					port = byNumber[port]
				}
				base := bases[name][port]
				if base == "" {
					t.Errorf("%s %s: port %q is none the test knows (%v)", name, probe, port, bases[name])
					continue
				}
				probed[name] = true
				if r := Do(t, "GET", base+path, "", nil); r.Status != 200 {
					t.Errorf("%s %s: GET %s%s (port %s): %d %s", name, probe, base, path, port, r.Status, r.Body)
				}
			}
		}
	}
	for name := range bases {
		if !probed[name] {
			t.Errorf("deploy/k8s: Deployment %s has no HTTP probe", name)
		}
	}
	for _, base := range []string{st.Edge.URL, st.Ingest.URL} {
		for _, path := range []string{"/health", "/health/ready"} {
			if r := Do(t, "GET", base+path, "", nil); r.Status != 200 {
				t.Errorf("GET %s%s: %d %s", base, path, r.Status, r.Body)
			}
		}
	}
}
