package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"--version"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if want := "k3s version v0.0.0-kiln-standin (STAND-IN: not Kubernetes; kiln's rehearsal only)\n"; out.String() != want {
		t.Errorf("--version = %q, want %q", out.String(), want)
	}
	for _, args := range [][]string{nil, {"kubectl"}, {"server", "--disable=traefik"}} {
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestConfigPath(t *testing.T) {
	t.Setenv("K3S_CONFIG_FILE", "")
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", defaultConfig},
		{nil, "/e.yaml", "/e.yaml"},
		{[]string{"--config", "/c.yaml"}, "/e.yaml", "/c.yaml"},
		{[]string{"-c", "/c.yaml"}, "", "/c.yaml"},
	} {
		t.Setenv("K3S_CONFIG_FILE", tc.env)
		if got, err := configPath(tc.args); err != nil || got != tc.want {
			t.Errorf("configPath(%q) with %q = %q, %v; want %q", tc.args, tc.env, got, err, tc.want)
		}
	}
}

// node lays out a server that passes every check under dir and returns
// its config.yaml.
func node(t *testing.T, dir string) string {
	t.Helper()
	token := write(t, filepath.Join(dir, "token"), "secret-token\n", 0o600)
	data := filepath.Join(dir, "data")
	write(t, filepath.Join(data, "agent/images/k3s-airgap-images-amd64.tar.zst"), "\x28\xb5\x2f\xfd", 0o644)
	write(t, filepath.Join(data, "server/manifests/a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n", 0o644)
	return write(t, filepath.Join(dir, "config.yaml"),
		"token-file: "+token+"\nnode-name: k3s-1\nnode-ip: 10.0.0.21\ndata-dir: "+data+"\n", 0o644)
}

// TestServe runs the server as systemd would (Type=notify): READY=1 on
// the notification socket, a status that `k3s check` passes, no token in
// it, and no status once stopped.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	config := node(t, dir)
	sock := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	status := filepath.Join(dir, "run", "status.json")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	var log bytes.Buffer
	go func() { done <- serve(ctx, "server", config, status, &log) }()

	l.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if msg := string(buf[:n]); !strings.HasPrefix(msg, "READY=1\n") || !strings.Contains(msg, "4 of 4 checks passed") {
		t.Errorf("notification %q", msg)
	}
	var out, errs bytes.Buffer
	if code := check(status, &out, &errs); code != 0 {
		t.Errorf("check: exit %d: %s%s", code, out.String(), errs.String())
	}
	var st Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Standin || st.Role != "server" || len(st.Checks) != 4 || st.Note != Banner {
		t.Errorf("status %+v", st)
	}
	if strings.Contains(out.String()+log.String(), "secret-token") {
		t.Error("the token shows in the status or the log")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code := check(status, &out, &errs); code != 1 || !strings.Contains(errs.String(), "not running") {
		t.Errorf("check after stop: exit %d: %s", code, errs.String())
	}
}

// TestServeFailing: a failed check still starts (the status says what
// failed), and `k3s check` exits 1.
func TestServeFailing(t *testing.T) {
	dir := t.TempDir()
	config := node(t, dir)
	if err := os.Chmod(filepath.Join(dir, "token"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	status := filepath.Join(dir, "status.json")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- serve(ctx, "agent", config, status, &bytes.Buffer{}) }()
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(status); err != nil && time.Now().Before(deadline); _, err = os.Stat(status) {
		time.Sleep(10 * time.Millisecond)
	}
	var out, errs bytes.Buffer
	code := check(status, &out, &errs)
	cancel()
	<-done
	if code != 1 {
		t.Errorf("check: exit %d, want 1", code)
	}
	for _, want := range []string{`"ok": false`, "mode 0644, want 0600", "an agent needs server"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}
