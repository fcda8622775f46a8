package roles

import (
	"bytes"
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"gopkg.in/yaml.v3"

	"github.com/kilnlab/kiln/profiles"
)

// k3s on the compute machines (seed 004), the configuration half: the
// first compute machine of the profile is the k3s server, the others join
// it as agents (profiles.Profile.K3sNodes).
//
// Public (K3sFiles, in the machine's state image):
//   - /etc/rancher/k3s/config.yaml, which k3s reads by itself: the node's
//     name and LAN address, the token file, and on the server the API
//     certificate's names and the packaged components to leave out; on an
//     agent the server's URL.
//   - k3s.service as k3s's install script writes it (Type=notify,
//     KillMode=process so that a restart of k3s leaves the pods running,
//     Delegate=yes for the containers' cgroups, unlimited limits), not
//     enabled: first boot starts it once the node is ready, and enables
//     it then so that later boots start it.
//   - with services.k3s.gitops, on the server: ArgoCD as a HelmChart of
//     k3s's own helm-controller, and a root Application of the lab's
//     repository. They are staged under /etc/kiln/k3s/manifests/ because
//     the state image carries /etc alone; first boot copies them into
//     k3s's auto-deploy directory (K3sNode.Manifests) before starting it.
//
// Secret (K3sSecretFiles, applied by the installer): the cluster token.
//
// The build installs the binary at K3sBinary and the airgap images
// tarball at K3sImagesFile in the role image, so k3s imports its system
// images (pause, coredns, ...) with no registry. The default route k3s
// insists on is always there: network.gateway is required, and the LAN's
// networkd file always routes through it (Gateway=, or an on-link
// [Route] on a jumbo link), reachable or not.
//
// The GitOps bootstrap alone needs the internet, as GitOps does: the
// chart repository, ArgoCD's images and the git repository.

// Paths of k3s on a compute machine.
const (
	K3sBinary     = "/usr/local/bin/k3s"
	K3sConfigPath = "/etc/rancher/k3s/config.yaml"
	K3sUnit       = "k3s.service"
	// K3sImagesDir is where k3s imports airgap image tarballs from at
	// every start (data-dir default).
	K3sImagesDir = "/var/lib/rancher/k3s/agent/images/"
	// K3sManifestsDir is k3s's auto-deploy directory: the server applies
	// every .yaml in it, re-applies a file when it changes, and retries a
	// failed one every 15 s (e.g. an Application before ArgoCD's CRDs).
	K3sManifestsDir = "/var/lib/rancher/k3s/server/manifests/"
	// K3sStagedManifestsDir holds kiln's manifests in the state image
	// until first boot copies them into K3sManifestsDir.
	K3sStagedManifestsDir = "/etc/kiln/k3s/manifests/"
	K3sSecretsDir         = SecretsDir + "/k3s"
	K3sTokenPath          = K3sSecretsDir + "/token"
	// K3sPort is the API server's (and the agents' supervisor) port.
	K3sPort = 6443
)

// A k3s node's part.
const (
	K3sServer = "server"
	K3sAgent  = "agent"
)

// ArgoCD as the GitOps bootstrap installs it: the argo-cd chart of
// argoproj/argo-helm, pinned. 10.1.1 (ArgoCD v3.4.4) is the newest in the
// repository's index.yaml (gh-pages, published 2026-07-02; tag
// argo-cd-10.1.1 of github.com/argoproj/argo-helm).
const (
	ArgoCDChart        = "argo-cd"
	ArgoCDRepo         = "https://argoproj.github.io/argo-helm"
	ArgoCDChartVersion = "10.1.1"
	ArgoCDNamespace    = "argocd"
)

// Names of kiln's manifests in the auto-deploy directory. k3s names each
// file's Addon after what precedes its first dot, so these have none, and
// none is a component name --disable deletes files by.
const (
	ArgoCDManifest  = "kiln-argocd.yaml"
	RootAppManifest = "kiln-root-app.yaml"
)

// K3sNode is a compute machine's part of k3s, for its first boot:
// machine.json's "k3s".
type K3sNode struct {
	Role string `json:"role"` // K3sServer or K3sAgent
	// Server is the API server's URL, https://<server's address>:6443;
	// the server's own on the server.
	Server    string `json:"server"`
	Config    string `json:"config"`     // K3sConfigPath
	TokenFile string `json:"token_file"` // K3sTokenPath, from the secret config
	Unit      string `json:"unit"`       // K3sUnit: first boot enables and starts it
	ImagesDir string `json:"images_dir"` // K3sImagesDir
	// Manifests are what first boot copies into k3s's auto-deploy
	// directory before starting k3s; the server's only, none without
	// GitOps.
	Manifests []K3sManifest `json:"manifests,omitempty"`
}

// K3sManifest is one staged manifest.
type K3sManifest struct {
	Staged string `json:"staged"` // in K3sStagedManifestsDir (state image)
	Path   string `json:"path"`   // in K3sManifestsDir
}

// K3sImagesFile is where the build puts k3s's airgap images for arch.
func K3sImagesFile(arch string) string {
	return K3sImagesDir + "k3s-airgap-images-" + arch + ".tar.zst"
}

// K3sIdentity returns m's part of k3s, nil when m runs no k3s. p must be
// validated.
func K3sIdentity(p *profiles.Profile, m *profiles.Machine) *K3sNode {
	nodes := p.K3sNodes()
	i := slices.IndexFunc(nodes, func(n *profiles.Machine) bool { return n.Name == m.Name })
	if i < 0 {
		return nil
	}
	n := &K3sNode{
		Role: K3sAgent, Server: k3sURL(nodes[0]), Config: K3sConfigPath, TokenFile: K3sTokenPath,
		Unit: K3sUnit, ImagesDir: K3sImagesDir,
	}
	if i == 0 {
		n.Role = K3sServer
		for _, name := range manifestNames(p) {
			n.Manifests = append(n.Manifests, K3sManifest{Staged: K3sStagedManifestsDir + name, Path: K3sManifestsDir + name})
		}
	}
	return n
}

// k3sURL is the server's API; profile addresses are IPv4.
func k3sURL(server *profiles.Machine) string {
	return fmt.Sprintf("https://%s:%d", server.Address, K3sPort)
}

func manifestNames(p *profiles.Profile) []string {
	if p.Services.K3s.GitOps == nil {
		return nil
	}
	return []string{ArgoCDManifest, RootAppManifest}
}

// K3sFiles returns m's public k3s configuration: config.yaml, the staged
// manifests (the server's, with GitOps) and k3s.service, not enabled.
// Nothing in them is secret. A machine that runs no k3s gets none. p must
// be validated.
func K3sFiles(p *profiles.Profile, m *profiles.Machine) ([]types.File, []types.Unit, error) {
	n := K3sIdentity(p, m)
	if n == nil {
		return nil, nil, nil
	}
	conf, err := k3sConfig(p, m, n)
	if err != nil {
		return nil, nil, fmt.Errorf("k3s %s: %w", m.Name, err)
	}
	files := []types.File{file(K3sConfigPath, conf)}
	for _, mf := range n.Manifests {
		data, err := k3sManifest(p, path.Base(mf.Path))
		if err != nil {
			return nil, nil, fmt.Errorf("k3s %s: %w", m.Name, err)
		}
		files = append(files, file(mf.Staged, data))
	}
	unit := k3sUnit(n.Role)
	return files, []types.Unit{{Name: K3sUnit, Contents: &unit}}, nil
}

// K3sSecretFiles returns the secret k3s configuration of m, one of
// p.K3sNodes(): the cluster token, root-only. The caller adds
// K3sSecretsDir as a private directory.
func K3sSecretFiles(m *profiles.Machine, token string) ([]types.File, error) {
	if m.Role != profiles.RoleCompute {
		return nil, fmt.Errorf("k3s %s: k3s runs on compute machines only, not on a %s machine", m.Name, m.Role)
	}
	// k3s trims the file; a token with blanks inside would be another
	// token than the lab's.
	if token == "" || strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == ':' }) {
		return nil, fmt.Errorf("k3s %s: the token is empty or malformed", m.Name)
	}
	return []types.File{privateFile(K3sTokenPath, token+"\n")}, nil
}

// k3sConfigFile is config.yaml: k3s's flags without their dashes. The
// server-only keys are left out of an agent's file.
type k3sConfigFile struct {
	Server              string   `yaml:"server,omitempty"`
	TokenFile           string   `yaml:"token-file"`
	NodeName            string   `yaml:"node-name"`
	NodeIP              string   `yaml:"node-ip"`
	AdvertiseAddress    string   `yaml:"advertise-address,omitempty"`
	TLSSAN              []string `yaml:"tls-san,omitempty"`
	Disable             []string `yaml:"disable,omitempty"`
	WriteKubeconfigMode string   `yaml:"write-kubeconfig-mode,omitempty"`
}

func k3sConfig(p *profiles.Profile, m *profiles.Machine, n *K3sNode) (string, error) {
	c := k3sConfigFile{TokenFile: n.TokenFile, NodeName: m.Name, NodeIP: m.Address}
	head := fmt.Sprintf("# Written by kiln: %s of lab %s, the k3s %s.", m.Name, p.Name, n.Role)
	if n.Role == K3sAgent {
		c.Server = n.Server
		head += fmt.Sprintf(" It joins the server at %s.", n.Server)
	} else {
		k := p.Services.K3s
		c.AdvertiseAddress = m.Address
		c.TLSSAN = uniq(append([]string{m.Name, m.Address}, k.TLSSAN...))
		c.Disable = slices.Clone(k.Disable)
		// The kubeconfig holds the cluster's admin credentials.
		c.WriteKubeconfigMode = "0600"
	}
	return marshalYAML(head, c)
}

// uniq drops repeats, keeping the first of each.
func uniq(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// marshalYAML renders v after a comment line, indented as Kubernetes'
// own documentation writes YAML. Values go through the encoder, never
// into a template, so no profile value can change the document's shape.
func marshalYAML(comment string, v any) (string, error) {
	var b bytes.Buffer
	fmt.Fprintln(&b, comment)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// k3sUnit is the unit k3s's install script (install.sh,
// create_systemd_service_file) writes, less its EnvironmentFile= lines:
// kiln's configuration is config.yaml alone. ExecStartPre's modprobes may
// fail harmlessly ("-"): the role image carries no modules, kiln-init
// loads what the role needs.
func k3sUnit(role string) string {
	return fmt.Sprintf(`# Written by kiln: k3s's own unit (its install script's), as the %s.
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
KillMode=process
Delegate=yes
User=root
# No limits: the kernel's accounting of them slows k3s down; cgroups limit
# the containers instead.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=%s %s
`, role, K3sBinary, role)
}

// objectMeta is the part of Kubernetes' metadata kiln's manifests use.
type objectMeta struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

// helmChart is k3s's helm.cattle.io/v1 HelmChart (k3s-io/helm-controller,
// doc/helmchart.md): k3s runs `helm install` of it in a Job.
type helmChart struct {
	APIVersion string        `yaml:"apiVersion"`
	Kind       string        `yaml:"kind"`
	Metadata   objectMeta    `yaml:"metadata"`
	Spec       helmChartSpec `yaml:"spec"`
}

type helmChartSpec struct {
	Chart           string `yaml:"chart"`
	Repo            string `yaml:"repo"`
	Version         string `yaml:"version"`
	TargetNamespace string `yaml:"targetNamespace"`
	CreateNamespace bool   `yaml:"createNamespace"`
}

// application is ArgoCD's argoproj.io/v1alpha1 Application.
type application struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       appSpec    `yaml:"spec"`
}

type appSpec struct {
	Project     string         `yaml:"project"`
	Source      appSource      `yaml:"source"`
	Destination appDestination `yaml:"destination"`
	SyncPolicy  appSyncPolicy  `yaml:"syncPolicy"`
}

type appSource struct {
	RepoURL        string `yaml:"repoURL"`
	Path           string `yaml:"path"`
	TargetRevision string `yaml:"targetRevision"`
}

type appDestination struct {
	Server    string `yaml:"server"`
	Namespace string `yaml:"namespace"`
}

type appSyncPolicy struct {
	Automated   appAutomated `yaml:"automated"`
	SyncOptions []string     `yaml:"syncOptions"`
}

type appAutomated struct {
	Prune    bool `yaml:"prune"`
	SelfHeal bool `yaml:"selfHeal"`
}

// k3sManifest renders one of kiln's GitOps manifests.
func k3sManifest(p *profiles.Profile, name string) (string, error) {
	switch name {
	case ArgoCDManifest:
		return marshalYAML(argoCDComment, argoCD())
	case RootAppManifest:
		return marshalYAML(fmt.Sprintf("# Written by kiln: lab %s's root Application; it deploys everything in the repository's path.", p.Name),
			rootApp(p.Services.K3s.GitOps))
	}
	return "", fmt.Errorf("no manifest %q", name)
}

// argoCDComment says how the repository takes ArgoCD over (seed 004: the
// root Application deploys everything, ArgoCD included). k3s re-applies
// every file of its auto-deploy directory at each start, so once the
// repository declares ArgoCD (this same HelmChart, or an Application of the
// chart with the lab's values), k3s and ArgoCD would both own it; k3s
// skips FILE when FILE.skip exists (pkg/deploy, shouldSkipFile).
const argoCDComment = `# Written by kiln: ArgoCD, installed by k3s's helm-controller. Once the
# lab's repository declares ArgoCD itself, create kiln-argocd.yaml.skip beside
# this file so that k3s stops re-applying it at each start.`

func argoCD() helmChart {
	return helmChart{
		APIVersion: "helm.cattle.io/v1", Kind: "HelmChart",
		// kube-system: where k3s's helm-controller looks for HelmCharts
		// by default; the release itself goes to ArgoCDNamespace.
		Metadata: objectMeta{Name: "argocd", Namespace: "kube-system"},
		Spec: helmChartSpec{
			Chart: ArgoCDChart, Repo: ArgoCDRepo, Version: ArgoCDChartVersion,
			TargetNamespace: ArgoCDNamespace, CreateNamespace: true,
		},
	}
}

// rootApp is the app of apps. Its destination namespace is ArgoCD's own,
// the only one whose Applications ArgoCD reads by default, so the child
// Applications the repository declares land there; anything that names
// its namespace keeps it. The source's type (plain manifests, Kustomize,
// Helm) is left to ArgoCD to recognise. A private repository needs a
// repository Secret in ArgoCD's namespace, which kiln does not make.
func rootApp(g *profiles.GitOps) application {
	return application{
		APIVersion: "argoproj.io/v1alpha1", Kind: "Application",
		Metadata: objectMeta{Name: "root", Namespace: ArgoCDNamespace},
		Spec: appSpec{
			Project: "default",
			Source: appSource{
				RepoURL:        g.Repo,
				Path:           cmp.Or(g.Path, "."),
				TargetRevision: cmp.Or(g.Revision, profiles.DefaultRevision),
			},
			Destination: appDestination{Server: "https://kubernetes.default.svc", Namespace: ArgoCDNamespace},
			SyncPolicy: appSyncPolicy{
				Automated:   appAutomated{Prune: true, SelfHeal: true},
				SyncOptions: []string{"CreateNamespace=true"},
			},
		},
	}
}
