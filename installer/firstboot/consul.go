package firstboot

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
	"os"
	"path/filepath"
	"time"

	"github.com/kilnlab/kiln/roles"
)

// The consul phase of a storage node: start the Consul server (its config
// and secrets came with the install), wait for the cluster's leader (a
// majority of the servers up), then create, with the initial management
// token, the ACL policies and tokens the profile implies with the fixed
// IDs the lab's secrets hold: this node's agent token and, when the lab
// runs Vault, Vault's storage token. Every task is idempotent: a policy or
// token that exists is left alone, so a re-run after a power cut, or every
// node creating the shared Vault token, is harmless.

// consulAPI is the local Consul agent's HTTP API, reached over TLS with
// the machine's certificate (Consul verifies incoming connections).
type consulAPI struct {
	base  string // https://127.0.0.1:8501
	http  *http.Client
	token string // sent as X-Consul-Token; "" is the anonymous token
}

// errConsulNotFound: the object asked for does not exist (404, or 403
// "ACL not found" for a token ID Consul does not know).
var errConsulNotFound = errors.New("not found")

// consulError is an answer other than 2xx.
type consulError struct {
	Status int
	Body   string
}

func (e *consulError) Error() string { return fmt.Sprintf("consul: %d %s", e.Status, e.Body) }

// newConsulAPI reads the machine's TLS identity under root.
func newConsulAPI(root, addr, token string) (*consulAPI, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(root, roles.MachineCertPath), filepath.Join(root, roles.MachineKeyPath))
	if err != nil {
		return nil, fmt.Errorf("consul: the machine's certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(root, roles.CACertPath))
	if err != nil {
		return nil, fmt.Errorf("consul: the lab CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("consul: the lab CA file holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	return &consulAPI{base: "https://" + addr, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, token: token}, nil
}

// do sends one request; out, when not nil, receives the JSON answer.
func (c *consulAPI) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound || (resp.StatusCode == http.StatusForbidden && bytes.Contains(raw, []byte("ACL not found"))) {
		return errConsulNotFound
	}
	if resp.StatusCode/100 != 2 {
		return &consulError{Status: resp.StatusCode, Body: string(bytes.TrimSpace(raw))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// leader is the cluster's Raft leader ("" while there is none).
func (c *consulAPI) leader(ctx context.Context) (string, error) {
	var l string
	err := c.do(ctx, http.MethodGet, "/v1/status/leader", nil, &l)
	return l, err
}

// ensurePolicy creates the policy name with rules unless it exists.
func (c *consulAPI) ensurePolicy(ctx context.Context, name, rules string) error {
	err := c.do(ctx, http.MethodGet, "/v1/acl/policy/name/"+url.PathEscape(name), nil, nil)
	if !errors.Is(err, errConsulNotFound) {
		return err
	}
	err = c.do(ctx, http.MethodPut, "/v1/acl/policy", map[string]string{"Name": name, "Rules": rules,
		"Description": "made by kiln's first boot"}, nil)
	if err != nil && c.do(ctx, http.MethodGet, "/v1/acl/policy/name/"+url.PathEscape(name), nil, nil) == nil {
		return nil // another node made it meanwhile
	}
	return err
}

// ensureToken creates the token with t's fixed IDs, linked to policies,
// unless a token with its accessor exists.
func (c *consulAPI) ensureToken(ctx context.Context, t roles.ConsulToken, desc string, policies []string) error {
	if t.AccessorID == "" || t.SecretID == "" {
		return fmt.Errorf("token %q has no fixed IDs in the lab's secrets", desc)
	}
	path := "/v1/acl/token/" + url.PathEscape(t.AccessorID)
	err := c.do(ctx, http.MethodGet, path, nil, nil)
	if !errors.Is(err, errConsulNotFound) {
		return err
	}
	links := make([]map[string]string, len(policies))
	for i, p := range policies {
		links[i] = map[string]string{"Name": p}
	}
	err = c.do(ctx, http.MethodPut, "/v1/acl/token", map[string]any{
		"AccessorID": t.AccessorID, "SecretID": t.SecretID, "Description": desc, "Policies": links,
	}, nil)
	if err != nil && c.do(ctx, http.MethodGet, path, nil, nil) == nil {
		return nil // another node made it meanwhile (the shared Vault token)
	}
	return err
}

// consulTasks are the consul phase's tasks; none when the machine runs no
// Consul.
func (s *node) consulTasks() []Task {
	c := s.env.Machine.Consul
	if c == nil {
		return nil
	}
	return []Task{
		{Name: "start", Run: s.systemctlStart(roles.ConsulUnit)},
		{Name: "leader", Run: s.waitConsulLeader},
		{Name: "acl", Run: s.consulACL},
		{Name: "member", Run: s.waitConsulMember},
	}
}

// consulTokens reads the tokens the install put on the state partition.
func (s *node) consulTokens() (roles.ConsulTokens, error) {
	var t roles.ConsulTokens
	b, err := s.readFile(roles.ConsulTokensPath)
	if err != nil {
		return t, fmt.Errorf("consul tokens: %w", err)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("consul tokens: %s: %w", roles.ConsulTokensPath, err)
	}
	return t, nil
}

// consul returns the local agent's API as the management token (or, with
// anonymous, as no one).
func (s *node) consul(anonymous bool) (*consulAPI, error) {
	token := ""
	if !anonymous {
		t, err := s.consulTokens()
		if err != nil {
			return nil, err
		}
		token = t.Management.SecretID
	}
	return newConsulAPI(s.Root, s.env.Machine.Consul.HTTPSAddress, token)
}

// waitConsulLeader waits until the servers elected a leader, which needs
// a majority of them up: bounded like Ceph's monitor quorum.
func (s *node) waitConsulLeader(ctx context.Context) error {
	api, err := s.consul(true)
	if err != nil {
		return err
	}
	err = s.wait(ctx, or(s.QuorumTimeout, 15*time.Minute), func(ctx context.Context) (bool, error) {
		l, err := api.leader(ctx)
		return err == nil && l != "", err
	})
	if err != nil {
		return fmt.Errorf("no Consul leader (a majority of the %d servers must be up): %w", len(s.env.Machine.Consul.Servers), err)
	}
	return nil
}

// consulACL creates the policies and tokens the machine's identity lists.
// Right after the election the leader may still be making the initial
// management token, so a refusal is retried within a bound.
func (s *node) consulACL(ctx context.Context) error {
	tokens, err := s.consulTokens()
	if err != nil {
		return err
	}
	api, err := s.consul(false)
	if err != nil {
		return err
	}
	c := s.env.Machine.Consul
	return s.wait(ctx, or(s.SettleTimeout, 2*time.Minute), func(ctx context.Context) (bool, error) {
		for _, p := range c.Policies {
			rules, err := s.readFile(p.Path)
			if err != nil {
				return true, fmt.Errorf("policy %s: %w", p.Name, err)
			}
			if err := api.ensurePolicy(ctx, p.Name, string(rules)); err != nil {
				return false, fmt.Errorf("policy %s: %w", p.Name, err)
			}
			tok, desc := tokens.Agent, "agent token of "+s.env.Machine.Name
			if p.Token == "vault" {
				if tokens.Vault == nil {
					return true, fmt.Errorf("policy %s: the lab's secrets hold no Vault token", p.Name)
				}
				tok, desc = *tokens.Vault, "Vault's storage token"
			}
			if err := api.ensureToken(ctx, tok, desc, []string{p.Name}); err != nil {
				return false, fmt.Errorf("token for %s: %w", p.Name, err)
			}
		}
		return true, nil
	})
}

// consulMember is one entry of /v1/agent/members.
type consulMember struct {
	Name   string
	Addr   string
	Status int // 1 alive
}

// waitConsulMember waits until the agent lists itself alive among the
// members, with its agent token now known to the cluster.
func (s *node) waitConsulMember(ctx context.Context) error {
	api, err := s.consul(false)
	if err != nil {
		return err
	}
	return s.wait(ctx, or(s.SettleTimeout, 2*time.Minute), func(ctx context.Context) (bool, error) {
		var ms []consulMember
		if err := api.do(ctx, http.MethodGet, "/v1/agent/members", nil, &ms); err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Name == s.env.Machine.Name && m.Status == 1 {
				return true, nil
			}
		}
		return false, fmt.Errorf("%s is not an alive member yet", s.env.Machine.Name)
	})
}
