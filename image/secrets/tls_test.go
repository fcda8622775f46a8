package secrets

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// labMachines are the reference lab's machines as the plan names them,
// plus the cases a profile can bring: no address, an IPv6 address, an
// IPv4-mapped one, further DNS names.
var labMachines = []Machine{
	{Hostname: "gate-1", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
	{Hostname: "ceph-1", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("fd00::11")},
		DNSNames: []string{"server.dc1.consul", "localhost"}},
	{Hostname: "ceph-2", IPs: []netip.Addr{netip.MustParseAddr("::ffff:192.168.1.12")}},
	{Hostname: "compute-1"},
}

func mustCA(t *testing.T, dir string) CA {
	t.Helper()
	ca, err := LabCA(dir, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestLabCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "kiln", "homelab")
	ca, err := LabCA(dir, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA %v, basic constraints %v, max path %d (zero %v)", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("key usage %b", c.KeyUsage)
	}
	if c.SignatureAlgorithm != x509.ECDSAWithSHA256 || c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("algorithms %v, %v", c.SignatureAlgorithm, c.PublicKeyAlgorithm)
	}
	if !strings.Contains(c.Subject.String(), "homelab") || c.Subject.String() != c.Issuer.String() {
		t.Errorf("subject %q, issuer %q", c.Subject, c.Issuer)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %v is not a large random number", c.SerialNumber)
	}
	if end := time.Now().AddDate(10, 0, 0); c.NotAfter.Before(end.Add(-time.Minute)) || c.NotAfter.After(end) {
		t.Errorf("valid until %s, want 10 years from now", c.NotAfter)
	}
	if !c.NotBefore.Equal(notBefore) {
		t.Errorf("valid from %s", c.NotBefore)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Errorf("the CA does not verify against itself: %v", err)
	}
	path := filepath.Join(dir, CAFile)
	checkModes(t, dir, path)
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, append(ca.CertPEM(), ca.KeyPEM()...)) {
		t.Error("ca.pem is not CertPEM then KeyPEM")
	}

	ageFiles(t, dir)
	files := snapshot(t, dir)
	again, err := LabCA(dir, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) || !bytes.Equal(again.KeyPEM(), ca.KeyPEM()) {
		t.Error("second call returned another CA")
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("second call touched ca.pem:\n%s", diff)
	}

	other, err := LabCA(privateDir(t), "homelab")
	if err != nil {
		t.Fatal(err)
	}
	if other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 || bytes.Equal(other.KeyPEM(), ca.KeyPEM()) {
		t.Error("two CAs share a serial or a key")
	}
	if _, err := LabCA(privateDir(t), ""); err == nil {
		t.Error("LabCA without a lab name succeeded")
	}
}

func TestMachineCerts(t *testing.T) {
	dir := privateDir(t)
	ca := mustCA(t, dir)
	certs, err := MachineCerts(dir, ca, labMachines)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != len(labMachines) {
		t.Fatalf("%d certificates for %d machines", len(certs), len(labMachines))
	}
	for _, tc := range []struct {
		host  string
		names []string
		ips   []string
	}{
		{"gate-1", []string{"gate-1"}, []string{"192.168.1.10"}},
		{"ceph-1", []string{"ceph-1", "server.dc1.consul", "localhost"}, []string{"192.168.1.11", "fd00::11"}},
		{"ceph-2", []string{"ceph-2"}, []string{"192.168.1.12"}},
		{"compute-1", []string{"compute-1"}, nil},
	} {
		t.Run(tc.host, func(t *testing.T) {
			mc := certs[tc.host]
			c := mc.Cert
			if c == nil || mc.Hostname != tc.host {
				t.Fatalf("no certificate for %s", tc.host)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if diff := cmp.Diff(struct {
				CN    string
				Names []string
				IPs   []string
			}{tc.host, tc.names, tc.ips}, struct {
				CN    string
				Names []string
				IPs   []string
			}{c.Subject.CommonName, c.DNSNames, ips}); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("IsCA %v, key usage %b", c.IsCA, c.KeyUsage)
			}
			if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage); diff != "" {
				t.Errorf("ext key usage:\n%s", diff)
			}
			if end := time.Now().AddDate(5, 0, 0); c.NotAfter.Before(end.Add(-time.Minute)) || c.NotAfter.After(end) {
				t.Errorf("valid until %s, want 5 years from now", c.NotAfter)
			}
			for _, name := range append(tc.names, tc.ips...) {
				for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
					_, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}})
					if err != nil {
						t.Errorf("verify as %s for %v: %v", name, usage, err)
					}
				}
			}
			for _, bad := range []x509.VerifyOptions{
				{Roots: ca.Pool(), DNSName: "compute-2"},
				{Roots: ca.Pool(), DNSName: "192.168.1.99"},
				{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}},
				{Roots: x509.NewCertPool()},
			} {
				if _, err := c.Verify(bad); err == nil {
					t.Errorf("verifies with %+v", bad)
				}
			}
			path := filepath.Join(dir, TLSDir, tc.host+".pem")
			checkModes(t, filepath.Join(dir, TLSDir), path)
			b, _ := os.ReadFile(path)
			if !bytes.Equal(b, append(mc.CertPEM(), mc.KeyPEM()...)) {
				t.Errorf("%s is not CertPEM then KeyPEM", path)
			}
		})
	}
	if bytes.Equal(certs["gate-1"].KeyPEM(), certs["ceph-1"].KeyPEM()) {
		t.Error("two machines share a key")
	}

	ageFiles(t, dir)
	files := snapshot(t, dir)
	again, err := MachineCerts(dir, mustCA(t, dir), labMachines)
	if err != nil {
		t.Fatal(err)
	}
	for h, mc := range certs {
		if !bytes.Equal(again[h].CertPEM(), mc.CertPEM()) || !bytes.Equal(again[h].KeyPEM(), mc.KeyPEM()) {
			t.Errorf("%s: second call returned another certificate", h)
		}
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("second call touched the files:\n%s", diff)
	}
}

// TestMutualTLS: two machines' certificates and the CA pool are enough for
// a mutual TLS handshake that checks both names.
func TestMutualTLS(t *testing.T) {
	dir := privateDir(t)
	ca := mustCA(t, dir)
	certs, err := MachineCerts(dir, ca, labMachines[:2])
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := net.Pipe()
	server := tls.Server(sc, &tls.Config{
		Certificates: []tls.Certificate{certs["gate-1"].TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	})
	client := tls.Client(cc, &tls.Config{
		Certificates: []tls.Certificate{certs["ceph-1"].TLSCertificate()},
		RootCAs:      ca.Pool(),
		ServerName:   "gate-1",
	})
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := server.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "ceph-1" {
		t.Errorf("the gate sees client %q", got)
	}
	cc.Close() // not client.Close: its close_notify would wait 5 s on the pipe
	sc.Close()
}

// TestMachineCertsChange: adding a machine issues its certificate,
// removing one leaves every file alone.
func TestMachineCertsChange(t *testing.T) {
	dir := privateDir(t)
	ca := mustCA(t, dir)
	first, err := MachineCerts(dir, ca, labMachines[:2])
	if err != nil {
		t.Fatal(err)
	}
	ageFiles(t, dir)
	files := snapshot(t, dir)
	second, err := MachineCerts(dir, ca, labMachines[1:3])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := second["gate-1"]; ok {
		t.Error("a removed machine's certificate is returned")
	}
	if !bytes.Equal(second["ceph-1"].CertPEM(), first["ceph-1"].CertPEM()) {
		t.Error("ceph-1's certificate changed")
	}
	after := snapshot(t, dir)
	if _, ok := after["tls/ceph-2.pem"]; !ok {
		t.Error("no certificate file for the new machine")
	}
	delete(after, "tls/ceph-2.pem")
	if diff := cmp.Diff(files, after); diff != "" {
		t.Errorf("existing files changed:\n%s", diff)
	}
}

// TestStale: a certificate that no longer fits is refused with the way
// out, and left as it is.
func TestStale(t *testing.T) {
	m := Machine{Hostname: "ceph-1", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.11")}}
	past := time.Now().AddDate(-6, 0, 0)
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, dir string) // makes the files
		file   string
		call   func(dir string) error
		wantIn string
	}{
		{"address changed", issueFor(m), "tls/ceph-1.pem",
			certsFor(Machine{Hostname: "ceph-1", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.21")}}),
			"it has addresses [192.168.1.11], the profile [192.168.1.21]"},
		{"address removed", issueFor(m), "tls/ceph-1.pem", certsFor(Machine{Hostname: "ceph-1"}), "the profile []"},
		{"name added", issueFor(m), "tls/ceph-1.pem",
			certsFor(Machine{Hostname: "ceph-1", IPs: m.IPs, DNSNames: []string{"localhost"}}), "it names [ceph-1], the profile [ceph-1 localhost]"},
		// A storage machine's certificate issued before the lab ran
		// Consul lacks the names Consul's servers and local clients
		// check (image/build's certMachines adds them).
		{"services added", issueFor(m), "tls/ceph-1.pem",
			certsFor(Machine{Hostname: "ceph-1", DNSNames: []string{"server.homelab.consul", "localhost"},
				IPs: []netip.Addr{netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("127.0.0.1")}}),
			"it names [ceph-1], the profile [ceph-1 localhost server.homelab.consul] (remove it to issue a new key and certificate for ceph-1"},
		{"loopback added", issueFor(m), "tls/ceph-1.pem",
			certsFor(Machine{Hostname: "ceph-1", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("127.0.0.1")}}),
			"it has addresses [192.168.1.11], the profile [127.0.0.1 192.168.1.11]"},
		{"other CA", func(t *testing.T, dir string) {
			issueFor(m)(t, dir)
			os.Remove(filepath.Join(dir, CAFile))
		}, "tls/ceph-1.pem", certsFor(m), "the lab CA in ca.pem did not sign it"},
		{"expired", func(t *testing.T, dir string) {
			ca, err := labCA(dir, "homelab", past)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := machineCerts(dir, ca, []Machine{m}, past); err != nil {
				t.Fatal(err)
			}
		}, "tls/ceph-1.pem", certsFor(m), "it expired on"},
		{"CA of another lab", issueFor(m), CAFile,
			func(dir string) error { _, err := LabCA(dir, "otherlab"); return err }, `it is "homelab lab CA", not "otherlab lab CA"`},
		{"CA expired", func(t *testing.T, dir string) {
			if _, err := labCA(dir, "homelab", time.Now().AddDate(-11, 0, 0)); err != nil {
				t.Fatal(err)
			}
		}, CAFile, func(dir string) error { _, err := LabCA(dir, "homelab"); return err }, "it expired on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			tc.setup(t, dir)
			path := filepath.Join(dir, tc.file)
			before, _ := os.ReadFile(path)
			err := tc.call(dir)
			if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), tc.wantIn) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrStale about %s saying %q", err, path, tc.wantIn)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the file was rewritten")
			}
		})
	}
}

func issueFor(m Machine) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if _, err := MachineCerts(dir, mustCA(t, dir), []Machine{m}); err != nil {
			t.Fatal(err)
		}
	}
}

func certsFor(m Machine) func(dir string) error {
	return func(dir string) error {
		ca, err := LabCA(dir, "homelab")
		if err == nil {
			_, err = MachineCerts(dir, ca, []Machine{m})
		}
		return err
	}
}

func TestMachineCertsBadInput(t *testing.T) {
	ca := mustCA(t, privateDir(t))
	for _, tc := range []struct {
		name     string
		ca       CA
		machines []Machine
	}{
		{"no CA", CA{}, labMachines},
		{"bad host name", ca, []Machine{{Hostname: "../ceph-1"}}},
		{"no host name", ca, []Machine{{}}},
		{"host twice", ca, []Machine{{Hostname: "ceph-1"}, {Hostname: "ceph-1"}}},
		{"bad DNS name", ca, []Machine{{Hostname: "ceph-1", DNSNames: []string{"a..b"}}}},
		{"zero address", ca, []Machine{{Hostname: "ceph-1", IPs: []netip.Addr{{}}}}},
		{"address with zone", ca, []Machine{{Hostname: "ceph-1", IPs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			if _, err := MachineCerts(dir, tc.ca, tc.machines); err == nil {
				t.Error("MachineCerts succeeded")
			}
			if _, err := os.Stat(filepath.Join(dir, TLSDir)); err == nil {
				t.Error("tls/ was made anyway")
			}
		})
	}
}

func TestTLSCorrupt(t *testing.T) {
	src := privateDir(t)
	ca := mustCA(t, src)
	certs, err := MachineCerts(src, ca, labMachines[:2])
	if err != nil {
		t.Fatal(err)
	}
	gate, ceph := certs["gate-1"], certs["ceph-1"]
	good := string(gate.CertPEM()) + string(gate.KeyPEM())
	sec1 := strings.ReplaceAll(string(gate.KeyPEM()), "PRIVATE KEY", "EC PRIVATE KEY")
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"empty", "tls/gate-1.pem", "", "does not start with a PEM CERTIFICATE"},
		{"text before", "tls/gate-1.pem", "gate-1\n" + good, "does not start with a PEM CERTIFICATE"},
		{"key first", "tls/gate-1.pem", string(gate.KeyPEM()) + string(gate.CertPEM()), "does not start with a PEM CERTIFICATE"},
		{"certificate alone", "tls/gate-1.pem", string(gate.CertPEM()), "no plain PEM PRIVATE KEY"},
		{"SEC 1 key", "tls/gate-1.pem", string(gate.CertPEM()) + sec1, "no plain PEM PRIVATE KEY"},
		{"another machine's key", "tls/gate-1.pem", string(gate.CertPEM()) + string(ceph.KeyPEM()), "does not belong"},
		{"text after", "tls/gate-1.pem", good + "x\n", "more after the private key"},
		{"broken certificate", "tls/gate-1.pem", strings.Replace(good, "MII", "MIX", 1), "certificate:"},
		{"a machine's pair as CA", CAFile, good, "not a CA certificate"},
		{"CA with a machine's key", CAFile, string(ca.CertPEM()) + string(gate.KeyPEM()), "does not belong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			if tc.file != CAFile {
				if err := os.WriteFile(filepath.Join(dir, CAFile), append(ca.CertPEM(), ca.KeyPEM()...), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(filepath.Join(dir, TLSDir), DirMode); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := certsFor(labMachines[0])(dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrCorrupt about %s saying %q", err, path, tc.want)
			}
			for _, key := range []MachineCert{gate, ceph} {
				for _, trace := range keyTraces(t, key.keyDER, key.key) {
					if strings.Contains(err.Error(), trace) {
						t.Error("the error shows a key")
					}
				}
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("a damaged file was rewritten")
			}
		})
	}
}

// keyTraces are the ways a private key could show in output: 32 base64
// characters of its PEM that encode the private scalar alone (the rest of
// a PKCS #8 P-256 key is the same in every key, or public), and the scalar
// in hex, decimal and base64.
func keyTraces(t *testing.T, der []byte, key interface{ Bytes() ([]byte, error) }) []string {
	t.Helper()
	raw, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(der, raw)
	if i < 0 {
		t.Fatal("the PKCS #8 key does not hold its scalar")
	}
	start := (i + 2) / 3 * 3 // the first base64 group inside the scalar
	body := base64.StdEncoding.EncodeToString(der)
	return []string{
		body[start/3*4 : start/3*4+32],
		hex.EncodeToString(raw),
		new(big.Int).SetBytes(raw).String(),
		base64.StdEncoding.EncodeToString(raw),
	}
}

// TestLabRefusesOpenPermissions: every new file and directory is refused
// once group or others can use it, and nothing is added to an open
// directory.
func TestLabRefusesOpenPermissions(t *testing.T) {
	makeAll := func(t *testing.T, dir string) error {
		if _, err := Ceph(dir, []string{"ceph-1"}); err != nil {
			return err
		}
		if _, err := Consul(dir, []string{"ceph-1"}); err != nil {
			return err
		}
		return certsFor(Machine{Hostname: "ceph-1"})(dir)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{CephFile, 0o640, "chmod 0600"},
		{CephMgrDir, 0o750, "chmod 0700"},
		{"ceph-mgr/ceph-1.key", 0o640, "chmod 0600"},
		{ConsulFile, 0o640, "chmod 0600"},
		{ConsulAgentDir, 0o750, "chmod 0700"},
		{"consul-agent/ceph-1.json", 0o604, "chmod 0600"},
		{CAFile, 0o640, "chmod 0600"},
		{TLSDir, 0o755, "chmod 0700"},
		{"tls/ceph-1.pem", 0o604, "chmod 0600"},
		{".", 0o750, "chmod 0700"},
	} {
		t.Run(fmt.Sprintf("%s %04o", tc.path, tc.mode), func(t *testing.T) {
			dir := privateDir(t)
			if err := makeAll(t, dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.path)
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			err := makeAll(t, dir)
			if !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrPermissions saying %q", err, tc.want)
			}
		})
	}
	t.Run("no new files in an open directory", func(t *testing.T) {
		dir := privateDir(t)
		if err := makeAll(t, dir); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{CephMgrDir, ConsulAgentDir, TLSDir} {
			if err := os.Chmod(filepath.Join(dir, d), 0o750); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Ceph(dir, []string{"ceph-1", "ceph-2"}); !errors.Is(err, ErrPermissions) {
			t.Errorf("Ceph = %v, want ErrPermissions", err)
		}
		if _, err := Consul(dir, []string{"ceph-1", "ceph-2"}); !errors.Is(err, ErrPermissions) {
			t.Errorf("Consul = %v, want ErrPermissions", err)
		}
		if _, err := MachineCerts(dir, mustCA(t, dir), []Machine{{Hostname: "ceph-2"}}); !errors.Is(err, ErrPermissions) {
			t.Errorf("MachineCerts = %v, want ErrPermissions", err)
		}
		for _, f := range []string{"ceph-mgr/ceph-2.key", "consul-agent/ceph-2.json", "tls/ceph-2.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%s was written into an open directory", f)
			}
		}
	})
}

// TestRedactedLab: printing or logging the Ceph keys, the CA or a
// machine's certificate shows no secret, whatever the verb or the nesting.
func TestRedactedLab(t *testing.T) {
	dir := privateDir(t)
	ceph, err := Ceph(dir, []string{"ceph-1"})
	if err != nil {
		t.Fatal(err)
	}
	ca := mustCA(t, dir)
	certs, err := MachineCerts(dir, ca, labMachines[1:2])
	if err != nil {
		t.Fatal(err)
	}
	mc := certs["ceph-1"]
	nested := struct {
		Key  CephKey
		CA   CA
		Cert MachineCert
	}{ceph.Admin, ca, mc}

	var out bytes.Buffer
	for _, v := range []any{ceph, &ceph, ceph.Mon, ceph.Mgr, ca, &ca, mc, &mc, certs, nested} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("secrets", "ceph", ceph, "mon", ceph.Mon, "mgr", ceph.Mgr, "ca", ca, "cert", mc, "certs", certs, "nested", nested)
	}

	var secrets []string
	for _, k := range []CephKey{ceph.Mon, ceph.Admin, ceph.BootstrapOSD, ceph.Mgr["ceph-1"]} {
		secrets = append(secrets, k.Base64(), hex.EncodeToString(k.b[12:]), fmt.Sprint(k.b[12:]))
	}
	secrets = append(secrets, keyTraces(t, ca.keyDER, ca.key)...)
	secrets = append(secrets, keyTraces(t, mc.keyDER, mc.key)...)
	if !strings.Contains(strings.ReplaceAll(string(mc.KeyPEM()), "\n", ""), secrets[len(secrets)-4]) {
		t.Fatal("keyTraces does not find the key in its own PEM")
	}
	s := out.String()
	if strings.Contains(s, "PRIVATE KEY") {
		t.Errorf("a PEM key shows in:\n%s", s)
	}
	flat := strings.ReplaceAll(s, "\n", "") // PEM wraps its base64
	for _, secret := range secrets {
		if strings.Contains(flat, secret) {
			t.Fatalf("a secret shows in:\n%s", s)
		}
	}
	for want, got := range map[string]string{
		"secrets.CephKey[secret]":             ceph.Mon.String(),
		"secrets.CephKeys[secret]":            fmt.Sprintf("%d", ceph),
		"secrets.CA[secret]":                  fmt.Sprint(ca),
		"secrets.MachineCert(ceph-1)[secret]": fmt.Sprintf("%#v", mc),
	} {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
	}
}

// TestOpenSSL checks the files with an independent implementation: the
// CA and the machines' certificates verify with openssl, for TLS server
// and client, by name and by address, and each key belongs to its
// certificate.
func TestOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed (Debian: openssl)")
		}
		t.Skip("openssl is not installed")
	}
	dir := privateDir(t)
	ca := mustCA(t, dir)
	if _, err := MachineCerts(dir, ca, labMachines); err != nil {
		t.Fatal(err)
	}
	// The secrets files as they are, and the CA certificate alone as a
	// machine will get it.
	caPEM, caCert := filepath.Join(dir, CAFile), filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caCert, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	openssl := func(args ...string) (string, error) {
		out, err := exec.Command("openssl", args...).CombinedOutput()
		return string(out), err
	}
	mustOpenSSL := func(args ...string) string {
		t.Helper()
		out, err := openssl(args...)
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	mustOpenSSL("verify", "-CAfile", caCert, "-purpose", "any", caCert)
	if pub, keyPub := mustOpenSSL("x509", "-in", caPEM, "-noout", "-pubkey"), mustOpenSSL("pkey", "-in", caPEM, "-pubout"); pub != keyPub {
		t.Error("openssl: ca.pem's key is not the certificate's")
	}
	for _, tc := range []struct {
		host  string
		check []string
	}{
		{"gate-1", []string{"-verify_hostname", "gate-1"}},
		{"gate-1", []string{"-verify_ip", "192.168.1.10"}},
		{"ceph-1", []string{"-verify_hostname", "server.dc1.consul"}},
		{"ceph-1", []string{"-verify_ip", "fd00::11"}},
		{"ceph-2", []string{"-verify_ip", "192.168.1.12"}},
		{"compute-1", []string{"-verify_hostname", "compute-1"}},
	} {
		pem := filepath.Join(dir, TLSDir, tc.host+".pem")
		for _, ca := range []string{caCert, caPEM} {
			for _, purpose := range []string{"sslserver", "sslclient"} {
				args := append([]string{"verify", "-CAfile", ca, "-purpose", purpose}, tc.check...)
				if out := mustOpenSSL(append(args, pem)...); !strings.Contains(out, ": OK") {
					t.Errorf("openssl %s: %s", strings.Join(args, " "), out)
				}
			}
		}
		if out, err := openssl("verify", "-CAfile", caCert, "-verify_hostname", "compute-2", pem); err == nil {
			t.Errorf("openssl verifies %s as compute-2:\n%s", tc.host, out)
		}
		if pub, keyPub := mustOpenSSL("x509", "-in", pem, "-noout", "-pubkey"), mustOpenSSL("pkey", "-in", pem, "-pubout"); pub != keyPub {
			t.Errorf("openssl: %s's key is not the certificate's", pem)
		}
	}
	// A certificate of another CA does not verify.
	other := privateDir(t)
	if _, err := MachineCerts(other, mustCA(t, other), labMachines[:1]); err != nil {
		t.Fatal(err)
	}
	if out, err := openssl("verify", "-CAfile", caCert, filepath.Join(other, TLSDir, "gate-1.pem")); err == nil {
		t.Errorf("openssl verifies another lab's certificate:\n%s", out)
	}
}
