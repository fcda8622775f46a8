package gateclient_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/installer/gateclient"
)

func TestSecrets(t *testing.T) {
	g := newGate(t)
	g.Secrets = []byte(`{"ignition":{"version":"3.5.0"}}`)
	ctx := context.Background()
	bad := g.Client()
	bad.Token = "stolen-token-value"
	if _, err := bad.Secrets(ctx); !errors.Is(err, gateclient.ErrForbidden) || strings.Contains(err.Error(), "stolen") {
		t.Errorf("wrong token: %v, want ErrForbidden without the token", err)
	}
	b, err := g.Client().Secrets(ctx)
	if err != nil || string(b) != string(g.Secrets) {
		t.Fatalf("Secrets() = %q, %v", b, err)
	}
	if _, err := g.Client().Secrets(ctx); !errors.Is(err, gateclient.ErrForbidden) {
		t.Errorf("second Secrets() = %v, want ErrForbidden", err)
	}
	down := g.Client()
	down.Base = "http://127.0.0.1:1"
	if _, err := down.Secrets(ctx); err == nil || strings.Contains(err.Error(), "tok") {
		t.Errorf("gate down: %v (and never the token)", err)
	}
}

// TestTLSClient: the role OS's client presents its certificate and
// trusts only the lab CA.
func TestTLSClient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	ca, err := secrets.LabCA(dir, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	// The gate's certificate names its address, as in a lab (here the
	// loopback address the test server listens on).
	certs, err := secrets.MachineCerts(dir, ca, []secrets.Machine{{Hostname: "gate-1", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, {Hostname: "ceph-1"}})
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			seen = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}))
	srv.TLS = srv.Config.TLSConfig
	srv.StartTLS() // httptest's own certificate: not the lab's
	defer srv.Close()
	c1 := certs["ceph-1"]
	hc, err := gateclient.TLSClient(ca.CertPEM(), c1.CertPEM(), c1.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Get(srv.URL); err == nil {
		t.Error("the client trusted a server without the lab's certificate")
	}
	if _, err := gateclient.TLSClient([]byte("nope"), c1.CertPEM(), c1.KeyPEM()); err == nil {
		t.Error("TLSClient accepted a CA without a certificate")
	}
	gate := httptest.NewUnstartedServer(srv.Config.Handler)
	gate.TLS = &tls.Config{Certificates: []tls.Certificate{certs["gate-1"].TLSCertificate()}, ClientAuth: tls.RequestClientCert}
	gate.StartTLS()
	defer gate.Close()
	resp, err := hc.Get(gate.URL)
	if err != nil {
		t.Fatalf("GET from the lab's gate: %v", err)
	}
	resp.Body.Close()
	if seen != "ceph-1" {
		t.Errorf("the gate saw client %q, want ceph-1", seen)
	}
}
