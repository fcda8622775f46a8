// Package pxe is the gate's netboot service: it ties DHCP (pxe/dhcp,
// proxy or full), TFTP (pxe/tftp), HTTP (pxe/httpd), the machine states
// (pxe/state) and, in full mode, the answer to IPv6 router solicitations
// (pxe/ndp) to one plan and one netboot bundle, and offers what
// `kiln gate machines` and `kiln gate reinstall` need.
//
// Everything listens on the lab interface only: DHCP sockets are bound to
// it (SO_BINDTODEVICE), TFTP and HTTP to the gate's address on it. The
// installer API must not be reachable over the gate's other links (the
// WireGuard tunnel).
package pxe

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/dhcp"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/pxe/ndp"
	"github.com/kilnlab/kiln/pxe/state"
	"github.com/kilnlab/kiln/pxe/tftp"
	"github.com/kilnlab/kiln/pxe/vault"
)

// DHCP modes.
const (
	ModeProxy = profiles.DHCPProxy
	ModeFull  = profiles.DHCPFull
)

// DefaultHTTPPort is the gate's HTTP port.
const DefaultHTTPPort = 8080

// Config configures the netboot service.
type Config struct {
	// Interface is the lab network interface, e.g. "eth0".
	Interface string
	Plan      *plan.Plan
	// BundleDir is the netboot bundle (`kiln build -o DIR`).
	BundleDir string
	// StateDir holds machine states and leases (the gate's /perm).
	StateDir string
	// SecretsDir is the gate's share of the lab's secrets
	// (image/secrets.GateStore: the payload's secrets/, or kiln build's
	// DIR/gate-secrets). With it the gate hands each installer its
	// machine's secrets and serves the TLS port for their reports;
	// without it (empty, or a build without TLS) it does neither.
	SecretsDir string
	// TLSPort defaults to api.TLSPort.
	TLSPort int
	// HTTPPort defaults to DefaultHTTPPort.
	HTTPPort int
	// Mode is ModeProxy or ModeFull; empty means the plan's mode, and
	// proxy when the plan says nothing.
	Mode   string
	Logger *slog.Logger

	// Address is the gate's address on Interface; the zero value means
	// the plan's gate address.
	Address netip.Addr
	// UEFIBootFile is the TFTP file for UEFI x64 PXE: "ipxe.efi"
	// (default) or "snponly.efi".
	UEFIBootFile string
	// InstallTimeout: see DefaultInstallTimeout.
	InstallTimeout time.Duration
	// DHCPPort, ProxyPort, TFTPPort override 67, 4011 and 69 (tests).
	DHCPPort, ProxyPort, TFTPPort int
	// Ready, when set, is called once by Run when every socket is open,
	// just before serving: the moment the gate may say it is serving.
	Ready func(gateURL string)
}

// Server is the netboot service.
type Server struct {
	cfg    Config
	addr   netip.Addr
	states *state.Store
}

// New checks cfg and opens the state directory.
func New(cfg Config) (*Server, error) {
	if cfg.Plan == nil {
		return nil, errors.New("pxe: no plan")
	}
	if cfg.Logger == nil {
		return nil, errors.New("pxe: no logger")
	}
	if cfg.Interface == "" {
		return nil, errors.New("pxe: no interface")
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = DefaultHTTPPort
	}
	if cfg.Mode == "" {
		cfg.Mode = cfg.Plan.Network.DHCPMode
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeProxy
	}
	if cfg.Mode != ModeProxy && cfg.Mode != ModeFull {
		return nil, fmt.Errorf("pxe: dhcp mode %q: want %q or %q", cfg.Mode, ModeProxy, ModeFull)
	}
	cfg.DHCPPort = orDefault(cfg.DHCPPort, dhcp.ServerPort)
	cfg.ProxyPort = orDefault(cfg.ProxyPort, dhcp.ProxyPort)
	cfg.TFTPPort = orDefault(cfg.TFTPPort, 69)
	cfg.TLSPort = orDefault(cfg.TLSPort, api.TLSPort)
	addr := cfg.Address
	if !addr.IsValid() {
		a, err := parseAddr(cfg.Plan.Gate.Address)
		if err != nil {
			return nil, fmt.Errorf("pxe: gate address: %w", err)
		}
		addr = a
	}
	states, err := state.Open(filepath.Join(cfg.StateDir, "machines"), nil)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, addr: addr, states: states}, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// parseAddr accepts "192.168.1.10" and "192.168.1.10/24".
func parseAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// GateURL is the base URL machines use to reach the gate.
func (s *Server) GateURL() string {
	return "http://" + netip.AddrPortFrom(s.addr, uint16(s.cfg.HTTPPort)).String()
}

// Run serves DHCP, TFTP and HTTP until ctx ends or one of them fails. All
// sockets are opened before anything is served, so a port conflict (a
// second DHCP server on this host) fails Run at once.
func (s *Server) Run(ctx context.Context) error {
	log := s.cfg.Logger
	hcfg := httpd.Config{
		Plan: s.cfg.Plan, BundleDir: s.cfg.BundleDir, States: s.states, GateURL: s.GateURL(),
		Log: log.With("svc", "http"),
	}
	tlsCfg, err := s.identity(&hcfg)
	if err != nil {
		return err
	}
	hs, err := httpd.New(hcfg)
	if err != nil {
		return err
	}
	defer hs.Close()
	handler, err := s.dhcpHandler()
	if err != nil {
		return err
	}

	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	dhcpConn, err := dhcp.Listen(ctx, s.cfg.Interface, s.cfg.DHCPPort)
	if err != nil {
		return err
	}
	closers = append(closers, dhcpConn.Close)
	var proxyConn *net.UDPConn
	if s.cfg.Mode == ModeProxy {
		if proxyConn, err = dhcp.Listen(ctx, s.cfg.Interface, s.cfg.ProxyPort); err != nil {
			closeAll()
			return err
		}
		closers = append(closers, proxyConn.Close)
	}
	// In full mode nothing else answers iPXE's router solicitations; a
	// gate without IPv6 on the LAN still serves, its clients just wait.
	var ndpConn *ndp.Conn
	if s.cfg.Mode == ModeFull {
		if ndpConn, err = ndp.Listen(ctx, s.cfg.Interface); err != nil {
			log.Warn("no answer to IPv6 router solicitations: netbooting iPXE waits ~16 s for one", "err", err)
		} else {
			closers = append(closers, ndpConn.Close)
		}
	}
	ip := net.IP(s.addr.AsSlice())
	tftpConn, err := tftp.Listen(&net.UDPAddr{IP: ip, Port: s.cfg.TFTPPort})
	if err != nil {
		closeAll()
		return fmt.Errorf("%w (is %s %s's address?)", err, s.addr, s.cfg.Interface)
	}
	closers = append(closers, tftpConn.Close)
	httpLn, err := net.Listen("tcp4", net.JoinHostPort(s.addr.String(), strconv.Itoa(s.cfg.HTTPPort)))
	if err != nil {
		closeAll()
		return fmt.Errorf("http: %w", err)
	}
	closers = append(closers, httpLn.Close)
	var tlsLn net.Listener
	if tlsCfg != nil {
		ln, err := net.Listen("tcp4", net.JoinHostPort(s.addr.String(), strconv.Itoa(s.cfg.TLSPort)))
		if err != nil {
			closeAll()
			return fmt.Errorf("https: %w", err)
		}
		tlsLn = tls.NewListener(ln, tlsCfg)
	}

	log.Info("netboot service up", "interface", s.cfg.Interface, "gate", s.addr, "mode", s.cfg.Mode,
		"http", s.GateURL(), "bundle", s.cfg.BundleDir)
	if s.cfg.Ready != nil {
		s.cfg.Ready(s.GateURL())
	}
	g, ctx := errgroup.WithContext(ctx)
	dlog := log.With("svc", "dhcp")
	g.Go(func() error { return dhcp.Serve(ctx, dhcpConn, handler, dhcp.ViaDHCP, dhcp.ClientPort, dlog) })
	if proxyConn != nil {
		g.Go(func() error { return dhcp.Serve(ctx, proxyConn, handler, dhcp.ViaProxy, dhcp.ClientPort, dlog) })
	}
	if ndpConn != nil {
		g.Go(func() error { return ndp.Serve(ctx, ndpConn, log.With("svc", "ndp")) })
	}
	ts := &tftp.Server{Root: filepath.Join(s.cfg.BundleDir, "tftp"), Log: log.With("svc", "tftp")}
	g.Go(func() error { return ts.Serve(ctx, tftpConn) })
	hsrv := &http.Server{Handler: hs.Handler(), ReadHeaderTimeout: 30 * time.Second, ConnContext: httpd.ConnContext}
	g.Go(func() error {
		if err := hsrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	tsrv := &http.Server{Handler: hs.TLSHandler(), ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.With("svc", "https").Handler(), slog.LevelWarn)}
	if tlsLn != nil {
		g.Go(func() error {
			if err := tsrv.Serve(tlsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("https: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		s.watchStalled(ctx, log.With("svc", "state"))
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return errors.Join(hsrv.Shutdown(sctx), tsrv.Shutdown(sctx))
	})
	return g.Wait()
}

// DefaultInstallTimeout bounds how long a machine may sit in installing
// without a word from its installer: then the gate re-arms it
// (state.Store.RearmStalled), and its next netboot installs it afresh.
// Install loops are bounded by state.MaxAttempts, not by time.
const DefaultInstallTimeout = time.Hour

// stalledCheck is how often the gate looks for stalled installs.
const stalledCheck = time.Minute

// watchStalled re-arms, once a minute until ctx ends, the installs the
// gate has heard nothing from for InstallTimeout (state.RearmStalled):
// no machine stays in installing for ever.
func (s *Server) watchStalled(ctx context.Context, log *slog.Logger) {
	timeout := cmp.Or(s.cfg.InstallTimeout, DefaultInstallTimeout)
	t := time.NewTicker(stalledCheck)
	defer t.Stop()
	for {
		changed, err := s.states.RearmStalled(timeout)
		if err != nil {
			log.Error("looking for stalled installs", "err", err)
		}
		for _, r := range changed {
			log.Warn("install stalled", "machine", r.Machine, "mac", r.MAC, "state", r.State, "why", cmp.Or(r.Rearmed, r.Error))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// identity loads the gate's share of the lab's secrets into hc and
// returns the TLS port's configuration: the gate's certificate, and client
// certificates requested (httpd checks them against the lab CA per
// request, so that a refusal is logged and shown, not lost in a failed
// handshake). It returns nil when the gate has no TLS identity.
func (s *Server) identity(hc *httpd.Config) (*tls.Config, error) {
	if s.cfg.SecretsDir == "" {
		s.cfg.Logger.Warn("no gate secrets: installers get no secrets, and machines cannot report")
		return nil, nil
	}
	store := secrets.GateStore{Dir: s.cfg.SecretsDir}
	hc.Secrets = store
	if !store.HasTLS() {
		s.cfg.Logger.Warn("the gate's secrets hold no TLS identity: machines cannot report", "dir", s.cfg.SecretsDir)
		return nil, nil
	}
	cert, pool, err := store.TLS()
	if err != nil {
		return nil, err
	}
	hc.ClientCAs = pool
	if v := s.cfg.Plan.Services; v != nil && v.Vault != nil {
		// The lab's Vault keys live in the gate's state, beside the
		// machines' states, on /perm for the appliance.
		hc.Vault = &vault.Keeper{Dir: filepath.Join(s.cfg.StateDir, "vault"), HTTP: vault.NewClient(pool), Log: s.cfg.Logger.With("svc", "vault")}
		hc.VaultUnseal = v.Vault.Unseal
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13}, nil
}

// dhcpHandler builds the handler of the configured mode.
func (s *Server) dhcpHandler() (dhcp.Handler, error) {
	boot := dhcp.Boot{Server: s.addr, HTTPPort: s.cfg.HTTPPort, UEFIFile: s.cfg.UEFIBootFile}
	hosts, err := newHosts(s.cfg.Plan)
	if err != nil {
		return nil, err
	}
	if s.cfg.Mode == ModeProxy {
		return &dhcp.Proxy{Hosts: hosts, Boot: boot}, nil
	}
	n := s.cfg.Plan.Network
	subnet, err := netip.ParsePrefix(n.CIDR)
	if err != nil {
		return nil, fmt.Errorf("full dhcp: network cidr: %w", err)
	}
	first, last, err := dhcp.ParseRange(n.Range)
	if err != nil {
		return nil, fmt.Errorf("full dhcp: %w", err)
	}
	reserved := []netip.Addr{s.addr}
	for _, h := range hosts {
		reserved = append(reserved, h.Addr)
	}
	pool := dhcp.NewPool(first, last, reserved, nil)
	if err := s.loadLeases(pool); err != nil {
		return nil, err
	}
	f := &dhcp.Full{Hosts: hosts, Boot: boot, Subnet: subnet.Masked(), Pool: pool}
	if f.Router, err = parseAddr(n.Gateway); err != nil && n.Gateway != "" {
		return nil, fmt.Errorf("full dhcp: gateway: %w", err)
	}
	for _, d := range n.DNS {
		a, err := parseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("full dhcp: dns: %w", err)
		}
		f.DNS = append(f.DNS, a)
	}
	return f, nil
}

// loadLeases restores saved leases and saves them on every change, so a
// gate reboot does not hand a leased address to a second client.
func (s *Server) loadLeases(pool *dhcp.Pool) error {
	dir := filepath.Join(s.cfg.StateDir, "dhcp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	path := filepath.Join(dir, "leases.json")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("leases: %w", err)
	default:
		var leases []dhcp.Lease
		if err := json.Unmarshal(b, &leases); err != nil {
			s.cfg.Logger.Warn("dhcp: ignoring unreadable leases file", "err", err)
		}
		pool.Restore(leases)
	}
	pool.OnChange = func() {
		b, err := json.MarshalIndent(pool.Leases(), "", "  ")
		if err == nil {
			err = state.WriteFileAtomic(path, b, 0o600)
		}
		if err != nil {
			s.cfg.Logger.Error("dhcp: saving leases", "err", err)
		}
	}
	return nil
}

// hosts is the plan's machines by MAC, for the DHCP handlers.
type hosts map[string]dhcp.Host

func newHosts(p *plan.Plan) (hosts, error) {
	h := hosts{}
	for i := range p.Machines {
		m := &p.Machines[i]
		mac, err := state.NormalizeMAC(m.MAC)
		if err != nil {
			return nil, fmt.Errorf("plan machine %s: %w", m.Name, err)
		}
		addr, err := parseAddr(m.Address)
		if err != nil && m.Address != "" {
			return nil, fmt.Errorf("plan machine %s: address: %w", m.Name, err)
		}
		ok, why := httpd.Netboot(p, m)
		h[mac] = dhcp.Host{Name: m.Name, Addr: addr, Netboot: ok, Reason: why}
	}
	return h, nil
}

// Host implements dhcp.Hosts.
func (h hosts) Host(mac net.HardwareAddr) (dhcp.Host, bool) {
	x, ok := h[strings.ToLower(mac.String())]
	return x, ok
}
