// celcost measures the ValidatingAdmissionPolicy that `offloading-webhook policy` prints with the
// API server's own code (k8s.io/apiserver v0.37.2, the release the test control plane runs):
//
//   - whether each expression compiles in the environment of a given Kubernetes release (a 1.30
//     API server checks new expressions against the libraries of 1.29);
//   - the cost CEL estimates for each expression when object and oldObject have the types of the
//     CRD's schema (the API server does not enforce this estimate for policies: it compiles their
//     expressions with untyped objects; it refuses CRD validation rules over it);
//   - the cost each binding spends on each object at runtime, counted as the API server counts it
//     (validations, then messageExpressions, against the budget of 10 000 000 per binding), and
//     the cost of each variable (each expression is limited to 1 000 000).
//
// Usage: celcost -policy policy.yaml -crd crd.yaml -version v1alpha1 -objects objects.jsonl
// Each line of objects.jsonl: {"what": "...", "object": {...}, "old": {...} or null}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"
	"sigs.k8s.io/yaml"
)

type variable struct{ name, expression string }

func (v variable) GetExpression() string      { return v.expression }
func (v variable) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.AnyType} }
func (v variable) GetName() string            { return v.name }
func (v variable) String() string             { return v.name }

type condition struct{ expression string }

func (c condition) GetExpression() string      { return c.expression }
func (c condition) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.BoolType} }

type message struct{ expression string }

func (m message) GetExpression() string      { return m.expression }
func (m message) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.StringType} }

func main() {
	policyPath := flag.String("policy", "", "the YAML of `offloading-webhook policy`")
	crdPath := flag.String("crd", "", "the NamespaceOffloading CRD")
	versionName := flag.String("version", "v1alpha1", "the CRD version the objects are in")
	objectsPath := flag.String("objects", "", "JSON lines: {what, object, old}")
	clusterID := flag.String("cluster-id", "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a", "the CLUSTER_ID of the ConfigMap parameter")
	flag.Parse()

	policy := readPolicy(*policyPath)
	vars := make([]plugincel.NamedExpressionAccessor, 0, len(policy.Spec.Variables))
	for _, v := range policy.Spec.Variables {
		vars = append(vars, variable{v.Name, v.Expression})
	}
	hasParams := policy.Spec.ParamKind != nil

	// 1. Compiles in the environment of each release.
	for _, v := range []*version.Version{version.MajorMinor(1, 29), version.MajorMinor(1, 30), version.MajorMinor(1, 37)} {
		errs := compileAll(environment.MustBaseEnvSet(v), policy, vars, hasParams, environment.NewExpressions)
		if len(errs) == 0 {
			fmt.Printf("compiles as a new expression with the CEL libraries of Kubernetes %s: yes\n", v)
		} else {
			fmt.Printf("compiles as a new expression with the CEL libraries of Kubernetes %s: NO\n  %s\n", v, strings.Join(errs, "\n  "))
		}
	}

	// 2. Estimated costs, with the CRD schema's types.
	if *crdPath != "" {
		estimate(*crdPath, *versionName, policy, hasParams)
	}

	// 3. Runtime costs.
	if *objectsPath != "" {
		runtimeCosts(*objectsPath, *versionName, policy, vars, hasParams, *clusterID)
	}
}

func readPolicy(path string) *admissionregistrationv1.ValidatingAdmissionPolicy {
	data, err := os.ReadFile(path)
	must(err)
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var p admissionregistrationv1.ValidatingAdmissionPolicy
		if yaml.Unmarshal([]byte(doc), &p) == nil && p.Kind == "ValidatingAdmissionPolicy" {
			return &p
		}
	}
	fail("no ValidatingAdmissionPolicy in %s", path)
	return nil
}

// compileAll compiles the policy as the API server's validation of a new policy does.
func compileAll(envSet *environment.EnvSet, p *admissionregistrationv1.ValidatingAdmissionPolicy, vars []plugincel.NamedExpressionAccessor, hasParams bool, mode environment.Type) []string {
	compiler, err := plugincel.NewCompositedCompiler(envSet)
	must(err)
	opts := plugincel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: true}
	var errs []string
	for _, v := range vars {
		if r := compiler.CompileAndStoreVariable(v, opts, mode); r.Error != nil {
			errs = append(errs, fmt.Sprintf("variable %s: %v", v.GetName(), firstLine(r.Error.Error())))
		}
	}
	for i, v := range p.Spec.Validations {
		if r := compiler.CompileCELExpression(condition{v.Expression}, opts, mode); r.Error != nil {
			errs = append(errs, fmt.Sprintf("validation %d: %v", i, firstLine(r.Error.Error())))
		}
		if r := compiler.CompileCELExpression(message{v.MessageExpression}, opts, mode); r.Error != nil {
			errs = append(errs, fmt.Sprintf("messageExpression %d: %v", i, firstLine(r.Error.Error())))
		}
	}
	return errs
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// estimate prints CEL's cost estimate of each expression, with object and oldObject typed by the
// CRD's schema (lists and strings bounded only by the 3 MiB request size: the CRD has no
// maxItems or maxLength), as the API server estimates CRD validation rules.
func estimate(crdPath, versionName string, p *admissionregistrationv1.ValidatingAdmissionPolicy, hasParams bool) {
	data, err := os.ReadFile(crdPath)
	must(err)
	var crd apiextensionsv1.CustomResourceDefinition
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var c apiextensionsv1.CustomResourceDefinition
		if yaml.Unmarshal([]byte(doc), &c) == nil && c.Spec.Names.Plural == "namespaceoffloadings" {
			crd = c
		}
	}
	var props *apiextensionsv1.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Name == versionName && v.Schema != nil {
			props = v.Schema.OpenAPIV3Schema
		}
	}
	if props == nil {
		fail("no schema of version %s in %s", versionName, crdPath)
	}
	var internal apiextensions.JSONSchemaProps
	must(apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(props, &internal, nil))
	structural, err := structuralschema.NewStructural(&internal)
	must(err)
	objectType := model.SchemaDeclType(structural, true).MaybeAssignTypeName("__object__")

	base := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	requestType := plugincel.BuildRequestType()
	namespaceType := plugincel.BuildNamespaceType()
	opts := []celgo.EnvOption{
		celgo.Variable("object", objectType.CelType()),
		celgo.Variable("oldObject", objectType.CelType()),
		celgo.Variable("request", requestType.CelType()),
		celgo.Variable("namespaceObject", namespaceType.CelType()),
		celgo.Variable("authorizer", library.AuthorizerType),
	}
	if hasParams {
		opts = append(opts, celgo.Variable("params", celgo.DynType))
	}
	envSet, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        opts,
		DeclTypes:         []*apiservercel.DeclType{objectType, requestType, namespaceType},
	})
	must(err)
	// Each variable is compiled with the variables before it, typed as they compile.
	fields := map[string]*apiservercel.DeclField{}
	sizes := &sizeEstimator{root: map[string]*apiservercel.DeclType{"object": objectType, "oldObject": objectType}}
	estimator := &library.CostEstimator{SizeEstimator: sizes}
	env := func() *celgo.Env {
		variables := apiservercel.NewObjectType("kubernetes.variables", fields)
		e, err := envSet.Extend(environment.VersionedOptions{
			IntroducedVersion: version.MajorMinor(1, 0),
			EnvOptions:        []celgo.EnvOption{celgo.Variable("variables", variables.CelType())},
			DeclTypes:         []*apiservercel.DeclType{variables},
		})
		must(err)
		cenv, err := e.Env(environment.StoredExpressions)
		must(err)
		return cenv
	}
	type row struct {
		name string
		cost uint64
	}
	var rows []row
	show := func(name, expression string) *celgo.Ast {
		ast, iss := env().Compile(expression)
		if iss != nil && iss.Err() != nil {
			rows = append(rows, row{name + " (does not type-check with the schema: " + firstLine(iss.Err().Error()) + ")", 0})
			return nil
		}
		c, err := env().EstimateCost(ast, estimator)
		must(err)
		rows = append(rows, row{name, c.Max})
		return ast
	}
	for _, v := range p.Spec.Variables {
		ast := show("variable "+v.Name, v.Expression)
		t := apiservercel.DynType
		if ast != nil {
			t = declTypeOf(ast.OutputType())
		}
		fields[v.Name] = apiservercel.NewDeclField(v.Name, t, true, nil, nil)
	}
	for i, v := range p.Spec.Validations {
		show(fmt.Sprintf("validation %d", i), v.Expression)
		show(fmt.Sprintf("messageExpression %d", i), v.MessageExpression)
	}
	fmt.Printf("estimated cost with the CRD schema's types (%s; lists and strings bounded by the 3 MiB request; per-expression limit %d):\n", versionName, celconfig.PerCallLimit)
	for _, r := range rows {
		fmt.Printf("  %-40s %s\n", r.name, human(r.cost))
	}
}

func declTypeOf(t *celgo.Type) *apiservercel.DeclType {
	switch t.Kind() {
	case celgo.BoolKind:
		return apiservercel.BoolType
	case celgo.IntKind:
		return apiservercel.IntType
	case celgo.StringKind:
		return apiservercel.StringType
	case celgo.ListKind:
		return apiservercel.NewListType(declTypeOf(t.Parameters()[0]), -1)
	}
	return apiservercel.DynType
}

func human(c uint64) string {
	if c == math.MaxUint64 {
		return "unbounded"
	}
	return fmt.Sprintf("%d (%.1e)", c, float64(c))
}

// sizeEstimator gives the sizes of object's and oldObject's fields from their schema's types,
// as the API server does for CRD validation rules.
type sizeEstimator struct {
	root map[string]*apiservercel.DeclType
}

func (s *sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	path := element.Path()
	if len(path) == 0 {
		return nil
	}
	t, ok := s.root[path[0]]
	if !ok {
		return nil
	}
	for _, p := range path[1:] {
		switch {
		case t.IsObject():
			f, ok := t.Fields[p]
			if !ok {
				return nil
			}
			t = f.Type
		case t.IsList() || t.IsMap():
			t = t.ElemType
		default:
			return nil
		}
	}
	return &checker.SizeEstimate{Min: 0, Max: uint64(t.MaxElements)}
}

func (s *sizeEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

type object struct {
	What   string          `json:"what"`
	Object json.RawMessage `json:"object"`
	Old    json.RawMessage `json:"old"`
}

// runtimeCosts evaluates the policy on each object as the API server does, and prints what each
// binding spent.
func runtimeCosts(path, versionName string, p *admissionregistrationv1.ValidatingAdmissionPolicy, vars []plugincel.NamedExpressionAccessor, hasParams bool, clusterID string) {
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	must(err)
	opts := plugincel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: true}
	msgOpts := plugincel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: false}
	compiler.CompileAndStoreVariables(vars, opts, environment.StoredExpressions)
	var validations, messages []plugincel.ExpressionAccessor
	for _, v := range p.Spec.Validations {
		validations = append(validations, condition{v.Expression})
		messages = append(messages, message{v.MessageExpression})
	}
	validationFilter := compiler.CompileCondition(validations, opts, environment.StoredExpressions)
	messageFilter := compiler.CompileCondition(messages, msgOpts, environment.StoredExpressions)
	// One filter per variable: its cost, its dependencies' included.
	perVariable := map[string]plugincel.ConditionEvaluator{}
	for _, v := range vars {
		e := fmt.Sprintf("type(variables.%s) == type(variables.%s)", v.GetName(), v.GetName())
		perVariable[v.GetName()] = compiler.CompileCondition([]plugincel.ExpressionAccessor{condition{e}}, opts, environment.StoredExpressions)
	}

	configMap := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "liqo-clusterid-configmap", Namespace: "liqo"},
		Data:       map[string]string{"CLUSTER_ID": clusterID},
	}
	bindings := []struct {
		name   string
		params runtime.Object
	}{{"static", nil}}
	if hasParams {
		bindings = append(bindings, struct {
			name   string
			params runtime.Object
		}{"cluster-id", configMap})
	}

	f, err := os.Open(path)
	must(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<20), 64<<20)
	gvk := schema.GroupVersionKind{Group: "offloading.liqo.io", Version: versionName, Kind: "NamespaceOffloading"}
	gvr := schema.GroupVersionResource{Group: "offloading.liqo.io", Version: versionName, Resource: "namespaceoffloadings"}
	budget := int64(celconfig.RuntimeCELCostBudget)
	fmt.Printf("runtime cost per binding (budget %d per binding and object; each expression at most %d):\n", budget, celconfig.PerCallLimit)
	for sc.Scan() {
		var o object
		must(json.Unmarshal(sc.Bytes(), &o))
		obj := &unstructured.Unstructured{}
		must(obj.UnmarshalJSON(o.Object))
		var old runtime.Object
		op := admission.Create
		if len(o.Old) > 0 && string(o.Old) != "null" {
			u := &unstructured.Unstructured{}
			must(u.UnmarshalJSON(o.Old))
			old, op = u, admission.Update
		}
		attrs := admission.NewAttributesRecord(obj, old, gvk, obj.GetNamespace(), obj.GetName(), gvr, "", op, nil, true, &user.DefaultInfo{Name: "admin"})
		versioned := &admission.VersionedAttributes{Attributes: attrs, VersionedKind: gvk}
		versioned.VersionedObject.Set(obj)
		if old != nil {
			versioned.VersionedOldObject.Set(old)
		}
		request := plugincel.CreateAdmissionRequest(attrs, metav1.GroupVersionResource(gvr), metav1.GroupVersionKind(gvk))
		ns := plugincel.CreateNamespaceObject(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}})
		var parts []string
		for _, b := range bindings {
			in := plugincel.OptionalVariableBindings{VersionedParams: b.params}
			results, left, err := validationFilter.ForInput(context.Background(), versioned, request, in, ns, budget)
			verdict := "allowed"
			if err != nil {
				verdict = "error: " + err.Error()
			}
			for _, r := range results {
				if r.Error != nil {
					verdict = "error: " + firstLine(r.Error.Error())
				} else if r.EvalResult != nil && r.EvalResult.Value() != true {
					verdict = "denied"
				}
			}
			_, left2, err := messageFilter.ForInput(context.Background(), versioned, request, in, ns, left)
			if err != nil {
				verdict += "; message error: " + err.Error()
			}
			// The most any one variable costs on its own: evaluated alone, less the variables it
			// reads (each evaluated alone). Each expression is limited to PerCallLimit.
			inclusive := map[string]int64{}
			for _, v := range vars {
				_, l, err := perVariable[v.GetName()].ForInput(context.Background(), versioned, request, in, ns, budget)
				if err == nil {
					inclusive[v.GetName()] = budget - l
				}
			}
			maxName, maxCost := "", int64(0)
			for _, v := range vars {
				own := inclusive[v.GetName()]
				for _, u := range vars {
					if u.GetName() != v.GetName() && reads(v.GetExpression(), u.GetName()) {
						own -= inclusive[u.GetName()]
					}
				}
				if own > maxCost {
					maxName, maxCost = v.GetName(), own
				}
			}
			parts = append(parts, fmt.Sprintf("%s binding %s: validations %d + messages %d = %d (%.1f%% of the budget); costliest variable %s %d",
				b.name, verdict, budget-left, left-left2, budget-left2, 100*float64(budget-left2)/float64(budget), maxName, maxCost))
		}
		fmt.Printf("  %s\n    %s\n", o.What, strings.Join(parts, "\n    "))
	}
	must(sc.Err())
}

// reads says whether expression reads variables.name.
func reads(expression, name string) bool {
	for rest := expression; ; {
		i := strings.Index(rest, "variables."+name)
		if i < 0 {
			return false
		}
		rest = rest[i+len("variables."+name):]
		if rest == "" || !(rest[0] == '_' || rest[0] >= 'a' && rest[0] <= 'z' || rest[0] >= '0' && rest[0] <= '9') {
			return true
		}
	}
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "celcost: "+format+"\n", args...)
	os.Exit(1)
}
