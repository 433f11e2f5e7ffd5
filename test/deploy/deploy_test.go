// Package deploy checks deploy/'s manifests against a real kube-apiserver
// (`make deploy-check`, and `make test` through ./test/...): every object
// is created with server-side dry-run and strict field validation, then for
// real, and the ServiceAccount is checked to get what `routepush watch`
// needs and not more.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/routepush/routepush/test/kube"
	"github.com/routepush/routepush/test/lab"
)

const (
	namespace = "routepush-system"
	account   = "system:serviceaccount:routepush-system:routepush"
)

// object is one manifest document, named for errors.
type object struct {
	file string
	obj  *unstructured.Unstructured
}

func (o object) String() string {
	name := o.obj.GetName()
	if ns := o.obj.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s: %s %s", o.file, o.obj.GetKind(), name)
}

// manifests decodes every document of deploy/*.yaml, in file order.
func manifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("../../deploy/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/")
	}
	sort.Strings(files)
	var objs []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := "deploy/" + filepath.Base(f)
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for i := 1; ; i++ {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", name, i, err)
			}
			if len(m) == 0 {
				continue // an empty document: comments only
			}
			u := &unstructured.Unstructured{Object: m}
			if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
				t.Fatalf("%s: document %d has no apiVersion, kind or name", name, i)
			}
			objs = append(objs, object{file: name, obj: u})
		}
	}
	return objs
}

// warnings collects what the API server warns about (PodSecurity among it).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

func TestManifests(t *testing.T) {
	objs := manifests(t) // before the lab: a broken file fails in a second
	if os.Geteuid() != 0 {
		t.Fatal("deploy-check needs root (the API server runs in a lab's network namespace); run it through `make deploy-check` as root")
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := kube.Binary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.Up(ctx, lab.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	api, err := kube.Start(ctx, kube.Options{Netns: l.Bastion, Advertise: l.BastionAddr, Dial: l.DialBastion, Dir: filepath.Join(l.Dir, "kube"), Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Stop)
	t.Logf("API server up in %s", time.Since(began).Round(time.Millisecond))

	cfg := api.RESTConfig(kube.AdminToken)
	warn := &warnings{}
	cfg.WarningHandler = warn
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(api.Admin.Discovery()))
	resource := func(o object) dynamic.ResourceInterface {
		gvk := o.obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: the API server does not serve %s: %v", o, gvk, err)
		}
		if m.Scope.Name() == "namespace" {
			if o.obj.GetNamespace() == "" {
				t.Fatalf("%s: a namespaced object without a namespace", o)
			}
			return dyn.Resource(m.Resource).Namespace(o.obj.GetNamespace())
		}
		if o.obj.GetNamespace() != "" {
			t.Fatalf("%s: a cluster-scoped object with a namespace", o)
		}
		return dyn.Resource(m.Resource)
	}

	// Namespaces for real first, from their files (PodSecurity reads their
	// labels): namespaced objects cannot be created, even in a dry run, in
	// one that does not exist. Their dry run is then an update.
	isNamespace := func(o object) bool { return o.obj.GetKind() == "Namespace" && o.obj.GroupVersionKind().Group == "" }
	for _, o := range objs {
		if isNamespace(o) {
			if _, err := resource(o).Create(ctx, o.obj.DeepCopy(), metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
				t.Fatalf("%s: creating: %v", o, err)
			}
		}
	}
	if _, err := api.Admin.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := api.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace %s: %v", namespace, err)
		}
	}
	warn.take()
	create := func(o object, dryRun bool) error {
		var dry []string
		if dryRun {
			dry = []string{metav1.DryRunAll}
		}
		var err error
		if isNamespace(o) {
			var cur *unstructured.Unstructured
			if cur, err = resource(o).Get(ctx, o.obj.GetName(), metav1.GetOptions{}); err == nil {
				u := o.obj.DeepCopy()
				u.SetResourceVersion(cur.GetResourceVersion())
				_, err = resource(o).Update(ctx, u, metav1.UpdateOptions{DryRun: dry, FieldValidation: metav1.FieldValidationStrict})
			}
		} else {
			_, err = resource(o).Create(ctx, o.obj.DeepCopy(), metav1.CreateOptions{DryRun: dry, FieldValidation: metav1.FieldValidationStrict})
		}
		if err != nil {
			return err
		}
		if w := warn.take(); len(w) > 0 {
			return fmt.Errorf("the API server warns: %s", strings.Join(w, "; "))
		}
		return nil
	}

	failed := false
	for _, o := range objs {
		if err := create(o, true); err != nil {
			t.Errorf("%s: server-side dry-run: %v", o, err)
			failed = true
			continue
		}
		t.Logf("%s: dry-run ok", o)
	}
	if failed {
		t.FailNow()
	}

	// Then for real, and what the ServiceAccount may do is what watch needs.
	for _, o := range objs {
		if isNamespace(o) {
			continue // created above
		}
		if err := create(o, false); err != nil {
			t.Fatalf("%s: creating: %v", o, err)
		}
	}
	checkAccess(ctx, t, api)
	t.Logf("deploy/ checked in %s", time.Since(began).Round(time.Millisecond))
}

// checkAccess asks the authorizer what the ServiceAccount may do: RBAC
// learns new bindings through a watch, so a grant is polled for.
func checkAccess(ctx context.Context, t *testing.T, api *kube.Server) {
	t.Helper()
	type access struct {
		ns, group, resource, sub, verb string
		want                           bool
		name                           string // one object's, when the rule names it
	}
	var checks []access
	for _, v := range []string{"get", "list", "watch"} {
		checks = append(checks, access{"", "", "nodes", "", v, true, ""})
	}
	checks = append(checks, access{"", "", "nodes", "status", "patch", true, ""})
	for _, g := range []string{"", "events.k8s.io"} {
		for _, v := range []string{"create", "patch"} {
			checks = append(checks, access{"default", g, "events", "", v, true, ""})
		}
	}
	checks = append(checks, access{namespace, "coordination.k8s.io", "leases", "", "create", true, ""})
	for _, v := range []string{"get", "update"} {
		checks = append(checks, access{namespace, "coordination.k8s.io", "leases", "", v, true, "routepush"},
			access{namespace, "coordination.k8s.io", "leases", "", v, false, "another"})
	}
	checks = append(checks,
		access{"kube-system", "", "events", "", "create", false, ""},
		access{"kube-system", "events.k8s.io", "events", "", "create", false, ""},
		access{"", "", "nodes", "", "delete", false, ""},
		access{"", "", "nodes", "", "update", false, ""},
		access{namespace, "", "secrets", "", "get", false, ""},
		access{"kube-system", "coordination.k8s.io", "leases", "", "update", false, ""},
	)
	reviews := api.Admin.AuthorizationV1().SubjectAccessReviews()
	allowed := func(a access) (bool, error) {
		r, err := reviews.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               account,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: a.ns, Group: a.group, Resource: a.resource, Subresource: a.sub, Verb: a.verb, Name: a.name},
		}}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Allowed, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range checks {
		what := fmt.Sprintf("%s %s", a.verb, strings.Trim(a.group+"/"+a.resource+"/"+a.sub, "/"))
		if a.name != "" {
			what += " " + a.name
		}
		if a.ns != "" {
			what += " in " + a.ns
		}
		for {
			ok, err := allowed(a)
			if err != nil {
				t.Fatalf("access review of %s: %v", what, err)
			}
			if ok == a.want {
				break
			}
			if !a.want {
				t.Errorf("deploy/10-rbac.yaml lets %s %s: more than watch needs", account, what)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("deploy/10-rbac.yaml does not let %s %s", account, what)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
