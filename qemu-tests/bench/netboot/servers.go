package netboot

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Server is one server under test, started in the server namespace and
// serving Dir.
type Server struct {
	Name  string // as the report shows it
	Proto string // "tftp" or "http"
	Port  int
	// Largest is the largest TFTP block size it takes, and why.
	Largest string
	cmd     *exec.Cmd
}

// URL is the address of name on s, for curl.
func (s *Server) URL(n *Net, name string) string {
	if s.Proto == "tftp" {
		return fmt.Sprintf("tftp://%s:%d/%s", n.ServerAddr, s.Port, name)
	}
	return fmt.Sprintf("http://%s:%d/files/%s", n.ServerAddr, s.Port, name)
}

// Pid is the server's process (ip netns exec execs it in place).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop ends the server.
func (s *Server) Stop() {
	defer func() { s.cmd = nil }()
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// Config is where the servers find their files and kiln's own serving
// code.
type Config struct {
	Dir  string // the files served: the TFTP root, and /files/ over HTTP
	Work string // scratch: nginx's config, logs, kiln's state
	// Self is this bench's own binary, whose serve-tftp and serve-http
	// subcommands run kiln's servers.
	Self string
}

// TFTPServers are kiln's (pxe/tftp) and the two peers, each on its port
// (dnsmasq always listens on 69).
func TFTPServers() []*Server {
	return []*Server{
		{Name: "kiln", Proto: "tftp", Port: 6969, Largest: "1468 (kiln clamps to one Ethernet frame: no IP fragments)"},
		{Name: "tftpd-hpa", Proto: "tftp", Port: 6970, Largest: "65464 (IP-fragmented on a 1500 MTU)"},
		{Name: "dnsmasq", Proto: "tftp", Port: 69, Largest: "1468 (dnsmasq clamps to the interface MTU)"},
	}
}

// HTTPServers are kiln's gate HTTP (pxe/httpd) and nginx.
func HTTPServers() []*Server {
	return []*Server{
		{Name: "kiln", Proto: "http", Port: 8080},
		{Name: "nginx", Proto: "http", Port: 8081},
	}
}

// Start starts s in n's server namespace and waits until it answers.
func (s *Server) Start(ctx context.Context, n *Net, c Config) error {
	addr := net.JoinHostPort(n.ServerAddr, strconv.Itoa(s.Port))
	switch s.Name + "/" + s.Proto {
	case "kiln/tftp":
		s.cmd = n.InServer(ctx, c.Self, "serve-tftp", "-root", c.Dir, "-addr", addr)
	case "tftpd-hpa/tftp":
		// -L: foreground; -s: chroot into the root, as Debian runs it.
		s.cmd = n.InServer(ctx, "in.tftpd", "-L", "-s", c.Dir, "-a", addr)
	case "dnsmasq/tftp":
		s.cmd = n.InServer(ctx, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
			"--enable-tftp", "--tftp-root="+c.Dir, "--listen-address="+n.ServerAddr, "--bind-interfaces",
			"--user=root", "--pid-file="+filepath.Join(c.Work, "dnsmasq.pid"), "--log-facility="+filepath.Join(c.Work, "dnsmasq.log"))
	case "kiln/http":
		s.cmd = n.InServer(ctx, c.Self, "serve-http", "-dir", c.Dir, "-addr", addr, "-state", filepath.Join(c.Work, "kiln-state"))
	case "nginx/http":
		conf, err := nginxConf(c, addr)
		if err != nil {
			return err
		}
		s.cmd = n.InServer(ctx, "nginx", "-c", conf, "-e", filepath.Join(c.Work, "nginx-error.log"))
	default:
		return fmt.Errorf("no server %s/%s", s.Name, s.Proto)
	}
	if err := s.startLogged(c); err != nil {
		return err
	}
	return s.waitReady(ctx, n)
}

// startLogged starts s.cmd with its output in the work folder.
func (s *Server) startLogged(c Config) error {
	log, err := os.OpenFile(filepath.Join(c.Work, s.Name+"-"+s.Proto+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	return nil
}

// waitReady fetches the small probe file until it comes.
func (s *Server) waitReady(ctx context.Context, n *Net) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := n.InClient(ctx, "curl", "-sS", "-o", "/dev/null", "--max-time", "2", s.URL(n, ProbeFile)).CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) does not serve %s: %v: %s", s.Name, s.Proto, ProbeFile, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ProbeFile is a small file beside the payload, to see a server is up.
const ProbeFile = "probe.txt"

// nginxConf writes a configuration of the kind Debian's default is:
// sendfile, one worker per core, no access log (kiln's gate logs no
// request either).
func nginxConf(c Config, addr string) (string, error) {
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
events { worker_connections 256; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    types { application/octet-stream img; }
    server {
        listen %[2]s;
        location /files/ { alias %[3]s/; }
    }
}
`, c.Work, addr, c.Dir)
	p := filepath.Join(c.Work, "nginx.conf")
	return p, os.WriteFile(p, []byte(conf), 0o644)
}
