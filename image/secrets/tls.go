package secrets

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The lab CA's file and the directory of the machines' certificates
// (HOST.pem) in the lab's secrets directory. Each file is a PEM
// CERTIFICATE followed by its PKCS #8 PRIVATE KEY (ECDSA P-256).
const (
	CAFile = "ca.pem"
	TLSDir = "tls"
)

// Validity, in years from when kiln makes the certificate; a machine's
// never outlasts the CA's.
const (
	caYears      = 10
	machineYears = 5
)

// notBefore starts every certificate kiln makes. It lies long before any
// kiln build because the gate has no RTC: its clock starts at its image's
// build time (SOURCE_DATE_EPOCH under reproducible builds), which can be
// older than the CA, and a certificate "not yet valid" would stop mutual
// TLS until NTP answers. A private CA's start date protects nothing.
var notBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// CA is the lab's certificate authority: every machine trusts Cert, and
// its key signs the machines' certificates.
type CA struct {
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	keyDER []byte // PKCS #8, as in the file
}

// Machine is what a machine's certificate names: Hostname (its
// CommonName and first DNS name), the further DNSNames it answers to (e.g.
// server.dc1.consul), and its addresses when the plan knows them.
type Machine struct {
	Hostname string
	DNSNames []string
	IPs      []netip.Addr
}

// MachineCert is one machine's TLS identity, signed by the lab CA, for
// server and client authentication.
type MachineCert struct {
	Hostname string
	Cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	keyDER   []byte
}

// Neither shows its key in output, whatever the verb.
func (CA) String() string                        { return "secrets.CA" + redacted }
func (CA) GoString() string                      { return "secrets.CA" + redacted }
func (CA) LogValue() slog.Value                  { return slog.StringValue(redacted) }
func (CA) Format(f fmt.State, _ rune)            { io.WriteString(f, "secrets.CA"+redacted) }
func (m MachineCert) String() string             { return "secrets.MachineCert(" + m.Hostname + ")" + redacted }
func (m MachineCert) GoString() string           { return m.String() }
func (m MachineCert) LogValue() slog.Value       { return slog.StringValue(m.Hostname + " " + redacted) }
func (m MachineCert) Format(f fmt.State, _ rune) { io.WriteString(f, m.String()) }

// CertPEM is the CA certificate (public): what machines trust.
func (c CA) CertPEM() []byte { return certPEM(c.Cert) }

// KeyPEM is the CA's private key, PKCS #8 PEM: whoever holds it can make
// certificates every machine of the lab trusts.
func (c CA) KeyPEM() []byte { return keyPEM(c.keyDER) }

// Pool holds the CA alone, for tls.Config's RootCAs and ClientCAs.
func (c CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// CertPEM is the machine's certificate (public).
func (m MachineCert) CertPEM() []byte { return certPEM(m.Cert) }

// KeyPEM is the machine's private key, PKCS #8 PEM.
func (m MachineCert) KeyPEM() []byte { return keyPEM(m.keyDER) }

// TLSCertificate is the machine's identity for a tls.Config.
func (m MachineCert) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{m.Cert.Raw}, PrivateKey: m.key, Leaf: m.Cert}
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// LabCA loads the lab's CA from dir/ca.pem, making it the first time: an
// ECDSA P-256 key and a self-signed certificate named after lab, valid
// for 10 years. A second call returns the same CA and leaves the file
// untouched.
func LabCA(dir, lab string) (CA, error) { return labCA(dir, lab, time.Now()) }

const caRemedy = "restore the file from a backup; a new CA needs a new certificate for every machine: remove ca.pem and tls/ to make them"

func caSubject(lab string) pkix.Name {
	return pkix.Name{Organization: []string{"kiln"}, CommonName: lab + " lab CA"}
}

func labCA(dir, lab string, now time.Time) (CA, error) {
	if lab == "" {
		return CA{}, errors.New("secrets: the lab CA needs the lab's name")
	}
	if err := ensureDir(dir); err != nil {
		return CA{}, err
	}
	return once(filepath.Join(dir, CAFile),
		func() ([]byte, error) { return newCA(lab, now) },
		func(path string) (CA, error) { return loadCA(path, lab, now) })
}

func newCA(lab string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               caSubject(lab),
		NotBefore:             notBefore,
		NotAfter:              now.AddDate(caYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs machines, not other CAs
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("secrets: lab CA: %w", err)
	}
	return encodePair(der, key)
}

func loadCA(path, lab string, now time.Time) (CA, error) {
	b, err := readPrivate(path)
	if err != nil {
		return CA{}, err
	}
	cert, key, der, err := parsePair(b)
	if err != nil {
		return CA{}, damaged(path, err, caRemedy)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return CA{}, damaged(path, errors.New("not a CA certificate"), caRemedy)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return CA{}, damaged(path, fmt.Errorf("not self-signed: %v", err), caRemedy)
	}
	const renew = "remove ca.pem and tls/ to make a new CA and a new certificate for every machine"
	if want := caSubject(lab).CommonName; cert.Subject.CommonName != want {
		return CA{}, stale(path, fmt.Errorf("it is %q, not %q", cert.Subject.CommonName, want),
			"use that lab's secrets directory, or "+renew)
	}
	if now.After(cert.NotAfter) {
		return CA{}, stale(path, fmt.Errorf("it expired on %s", cert.NotAfter.Format(time.DateOnly)), renew)
	}
	return CA{Cert: cert, key: key, keyDER: der}, nil
}

// MachineCerts loads the certificate of each machine from
// dir/tls/HOST.pem, issuing the missing ones with ca (from LabCA of the
// same dir): an ECDSA P-256 key, CommonName the host name, the
// machine's names and addresses as SANs, server and client auth, valid
// for 5 years. Existing files are only read; the files of machines not in
// machines are left alone and not returned. A certificate whose names or
// addresses differ from the machine's, that ca did not sign, or that has
// expired is refused with ErrStale.
func MachineCerts(dir string, ca CA, machines []Machine) (map[string]MachineCert, error) {
	return machineCerts(dir, ca, machines, time.Now())
}

func machineCerts(dir string, ca CA, machines []Machine, now time.Time) (map[string]MachineCert, error) {
	if ca.Cert == nil || ca.key == nil {
		return nil, errors.New("secrets: machine certificates need the lab CA (LabCA)")
	}
	hosts := make([]string, len(machines))
	for i, m := range machines {
		hosts[i] = m.Hostname
		if err := m.check(); err != nil {
			return nil, err
		}
	}
	if err := checkHosts(hosts); err != nil {
		return nil, err
	}
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	certs := make(map[string]MachineCert, len(machines))
	if len(machines) == 0 {
		return certs, nil
	}
	tlsDir := filepath.Join(dir, TLSDir)
	if err := ensureDir(tlsDir); err != nil {
		return nil, err
	}
	for _, m := range machines {
		c, err := once(filepath.Join(tlsDir, m.Hostname+".pem"),
			func() ([]byte, error) { return issue(ca, m, now) },
			func(path string) (MachineCert, error) { return loadMachine(path, ca, m, now) })
		if err != nil {
			return nil, err
		}
		certs[m.Hostname] = c
	}
	return certs, nil
}

// check refuses names and addresses a certificate cannot carry.
func (m Machine) check() error {
	for _, n := range m.DNSNames {
		if !isDNSName(n) {
			return fmt.Errorf("secrets: %s: %q is not a DNS name", m.Hostname, n)
		}
	}
	for _, a := range m.IPs {
		if !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("secrets: %s: %q is not an IP address a certificate can carry", m.Hostname, a)
		}
	}
	return nil
}

// isDNSName accepts dotted RFC 1123 names, lowercase.
func isDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !hostRE.MatchString(l) {
			return false
		}
	}
	return true
}

// dnsNames are the machine's DNS SANs: the host name first.
func (m Machine) dnsNames() []string {
	names := []string{m.Hostname}
	for _, n := range m.DNSNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// ips are the machine's IP SANs, IPv4 as 4 bytes.
func (m Machine) ips() []netip.Addr {
	var ips []netip.Addr
	for _, a := range m.IPs {
		if a = a.Unmap(); !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
	}
	return ips
}

func issue(ca CA, m Machine, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	end := now.AddDate(machineYears, 0, 0)
	if end.After(ca.Cert.NotAfter) {
		end = ca.Cert.NotAfter
	}
	var ips []net.IP
	for _, a := range m.ips() {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: m.Hostname},
		DNSNames:              m.dnsNames(),
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              end,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("secrets: certificate of %s: %w", m.Hostname, err)
	}
	return encodePair(der, key)
}

func loadMachine(path string, ca CA, m Machine, now time.Time) (MachineCert, error) {
	b, err := readPrivate(path)
	if err != nil {
		return MachineCert{}, err
	}
	renew := fmt.Sprintf("remove it to issue a new key and certificate for %s from the lab CA, then reinstall or update that machine", m.Hostname)
	cert, key, der, err := parsePair(b)
	if err != nil {
		return MachineCert{}, damaged(path, err, renew)
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return MachineCert{}, stale(path, errors.New("the lab CA in "+CAFile+" did not sign it"), renew)
	}
	if cert.Subject.CommonName != m.Hostname {
		return MachineCert{}, stale(path, fmt.Errorf("it is for %q, not %q", cert.Subject.CommonName, m.Hostname), renew)
	}
	if got, want := slices.Sorted(slices.Values(cert.DNSNames)), slices.Sorted(slices.Values(m.dnsNames())); !slices.Equal(got, want) {
		return MachineCert{}, stale(path, fmt.Errorf("it names %v, the profile %v", got, want), renew)
	}
	var gotIPs []netip.Addr
	for _, ip := range cert.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		gotIPs = append(gotIPs, a.Unmap())
	}
	slices.SortFunc(gotIPs, netip.Addr.Compare)
	wantIPs := slices.SortedFunc(slices.Values(m.ips()), netip.Addr.Compare)
	if !slices.Equal(gotIPs, wantIPs) {
		return MachineCert{}, stale(path, fmt.Errorf("it has addresses %v, the profile %v", gotIPs, wantIPs), renew)
	}
	if now.After(cert.NotAfter) {
		return MachineCert{}, stale(path, fmt.Errorf("it expired on %s", cert.NotAfter.Format(time.DateOnly)), renew)
	}
	return MachineCert{Hostname: m.Hostname, Cert: cert, key: key, keyDER: der}, nil
}

// newSerial is a random 128-bit serial number, never 0 (RFC 5280 4.1.2.2).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// encodePair is a certificate file: the CERTIFICATE, then its PKCS #8
// PRIVATE KEY.
func encodePair(certDER []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), keyPEM(der)...), nil
}

// parsePair reads a certificate file. Its errors never quote the key.
func parsePair(b []byte) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	cb, rest := pem.Decode(b)
	if cb == nil || cb.Type != "CERTIFICATE" || !bytes.HasPrefix(b, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, nil, nil, errors.New("it does not start with a PEM CERTIFICATE")
	}
	kb, rest := pem.Decode(rest)
	if kb == nil || kb.Type != "PRIVATE KEY" || len(kb.Headers) != 0 {
		return nil, nil, nil, errors.New("no plain PEM PRIVATE KEY after the certificate")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, nil, errors.New("there is more after the private key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certificate: %v", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, nil, errors.New("the private key is not PKCS #8")
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, nil, nil, errors.New("the private key is not ECDSA P-256")
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, nil, errors.New("the private key does not belong to the certificate")
	}
	return cert, key, kb.Bytes, nil
}
