package gateclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/kilnlab/kiln/pxe/api"
)

// maxSecrets bounds a secrets answer: a machine's secret config is a few
// KiB of keys and certificates.
const maxSecrets = 1 << 20

// Secrets trades the install's token, once, for this machine's secret
// configuration, sealed by the gate to a key made for this one request
// (api.Seal). ErrForbidden means the gate refused: the token was used
// already (maybe by another host on the LAN), so the install must stop.
func (c *Client) Secrets(ctx context.Context) ([]byte, error) {
	key, err := api.NewSecretsKey()
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(api.SecretsRequest{PublicKey: key.PublicKey().Bytes()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(api.PathSecrets, true), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch secrets: %w", redactErr(err))
	}
	defer resp.Body.Close()
	if err := status(resp); err != nil {
		return nil, fmt.Errorf("fetch secrets: %w", err)
	}
	var sealed api.SecretsResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSecrets)).Decode(&sealed); err != nil {
		return nil, fmt.Errorf("fetch secrets: %w", err)
	}
	return api.Open(key, c.MAC, sealed)
}

// redactErr drops the URL (and so the token) from a failed request's
// error: net/http's *url.Error quotes the whole URL.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// TLSClient is an HTTP client for the gate's TLS port: it presents the
// machine's certificate and trusts only the lab CA, so the machine's
// reports are its own and reach the lab's gate, not whoever answers.
func TLSClient(caPEM, certPEM, keyPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("lab CA: no certificate")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("machine certificate: %w", err)
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		}},
	}, nil
}
