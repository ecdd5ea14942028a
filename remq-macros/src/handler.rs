//! `#[remq::handler]`: parsing of the attribute's arguments, checks of the
//! function, and the expansion (the function unchanged, plus a registration).

use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, LitBool, LitInt, LitStr, Token};

/// What `#[remq::handler(...)]` expands to, or every error found in it.
pub(crate) fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = HandlerArgs::parse.parse2(attr);
    let function = syn::parse2::<ItemFn>(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`#[remq::handler]` goes on an `async fn`, e.g. `async fn on_event(Json(event): Json<Event>)`",
        )
    });
    // Report the problems of the arguments and of the function together.
    let (args, function) = match (args, function) {
        (Ok(args), Ok(function)) => (args, function),
        (Err(mut e), Err(other)) => {
            e.combine(other);
            return Err(e);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    check_signature(&function)?;
    Ok(registration(&args, &function))
}

/// The attribute's arguments: the pattern, then `key = value` options.
struct HandlerArgs {
    /// The glob pattern of the channels the handler consumes.
    pattern: LitStr,
    /// The options after the pattern.
    options: Options,
}

impl Parse for HandlerArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let pattern = parse_pattern(input)?;
        let mut options = Options::default();
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break; // a trailing comma
            }
            options.parse_one(input)?;
        }
        Ok(HandlerArgs { pattern, options })
    }
}

/// What to write instead, quoted in the errors about the pattern.
const PATTERN_EXAMPLE: &str = "#[remq::handler(\"events.*\")]";

/// Parses and checks the first argument: a string literal holding the pattern.
fn parse_pattern(input: ParseStream<'_>) -> syn::Result<LitStr> {
    if input.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("missing the channel pattern: write `{PATTERN_EXAMPLE}`"),
        ));
    }
    if input.peek(Ident::peek_any) && input.peek2(Token![=]) {
        return Err(input.error(
            "missing the channel pattern: it comes first, before the options, as in \
             `#[remq::handler(\"events.*\", name = \"...\")]`",
        ));
    }
    if !input.peek(LitStr) {
        let expr: Expr = input.parse()?;
        return Err(syn::Error::new_spanned(
            expr,
            format!("the channel pattern must be a string literal, as in `{PATTERN_EXAMPLE}`"),
        ));
    }
    let pattern: LitStr = input.parse()?;
    let value = pattern.value();
    // The same rules, and words, as `remq::validate_pattern` at run time.
    if value.is_empty() {
        return Err(syn::Error::new(
            pattern.span(),
            "a pattern must not be empty (use `*` for every channel)",
        ));
    }
    if value.contains('\n') {
        return Err(syn::Error::new(
            pattern.span(),
            "a pattern must not contain a newline (no channel name has one)",
        ));
    }
    Ok(pattern)
}

/// The `key = value` options after the pattern.
///
/// Adding one: a field here, its key in [`Options::KNOWN`], and an arm in
/// [`Options::parse_one`] that parses its value (e.g. a `LitInt` for
/// `retries = 5`) and stores it with [`set_once`].
#[derive(Default)]
struct Options {
    /// `name = "..."`: the durable consumer name.
    name: Option<LitStr>,
    /// `retries = 5`: retries after the first attempt.
    retries: Option<u32>,
    /// `timeout = "30s"`: the deadline of one attempt, in milliseconds.
    timeout: Option<u64>,
    /// `timeout_permanent = true`: a timeout is not retried.
    timeout_permanent: Option<bool>,
    /// `dead_letter = "..."`: the channel failed messages go to.
    dead_letter: Option<LitStr>,
    /// `concurrency = 8`: messages handled at once, one at a time per channel.
    concurrency: Option<usize>,
    /// `rate_limit = 100`: at most this many attempts a second.
    rate_limit: Option<u32>,
    /// `namespace = "remq:{billing}"`: the namespace the handler consumes.
    namespace: Option<LitStr>,
}

impl Options {
    /// Every option's key, for the error about an unknown one.
    const KNOWN: &'static [&'static str] = &[
        "name",
        "retries",
        "timeout",
        "timeout_permanent",
        "dead_letter",
        "concurrency",
        "rate_limit",
        "namespace",
    ];

    /// Parses one `key = value` and stores it.
    fn parse_one(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        let key = Ident::parse_any(input).map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected an option `key = value`; known options: {}", known_options()),
            )
        })?;
        match key.unraw().to_string().as_str() {
            "name" => {
                let value: LitStr = parse_value(input, &key, "a string literal, as in `name = \"billing\"`")?;
                if value.value().is_empty() {
                    return Err(syn::Error::new(value.span(), "the consumer `name` must not be empty"));
                }
                set_once(&mut self.name, &key, value)
            }
            "retries" => {
                let value: LitInt = parse_value(input, &key, "a whole number, as in `retries = 5`")?;
                let retries = value.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new(
                        value.span(),
                        "`retries` takes a whole number from 0 up (retries after the first attempt)",
                    )
                })?;
                set_once(&mut self.retries, &key, retries)
            }
            "timeout" => {
                let value: LitStr = parse_value(input, &key, "a duration string, as in `timeout = \"30s\"`")?;
                let timeout = humantime::parse_duration(&value.value())
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        syn::Error::new(
                            value.span(),
                            "expected a positive duration such as \"500ms\", \"30s\" or \"2m\"",
                        )
                    })?;
                set_once(&mut self.timeout, &key, timeout.as_millis().try_into().unwrap_or(u64::MAX))
            }
            "concurrency" => {
                let value: LitInt = parse_value(input, &key, "a whole number, as in `concurrency = 8`")?;
                let concurrency = value.base10_parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    syn::Error::new(value.span(), "`concurrency` takes a whole number from 1 up")
                })?;
                set_once(&mut self.concurrency, &key, concurrency)
            }
            "timeout_permanent" => {
                let value: LitBool = parse_value(input, &key, "`true` or `false`")?;
                set_once(&mut self.timeout_permanent, &key, value.value)
            }
            "rate_limit" => {
                let value: LitInt = parse_value(input, &key, "attempts a second, as in `rate_limit = 100`")?;
                let rate = value.base10_parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    syn::Error::new(
                        value.span(),
                        "`rate_limit` takes attempts a second, a whole number from 1 up",
                    )
                })?;
                set_once(&mut self.rate_limit, &key, rate)
            }
            "dead_letter" => {
                let value: LitStr =
                    parse_value(input, &key, "a channel name, as in `dead_letter = \"dead.billing\"`")?;
                let channel = value.value();
                if channel.is_empty() || channel.contains(['\n', '*', '?', '[', ']']) {
                    return Err(syn::Error::new(
                        value.span(),
                        "a dead-letter channel must be a non-empty channel name without newlines or the glob characters * ? [ ]",
                    ));
                }
                set_once(&mut self.dead_letter, &key, value)
            }
            "namespace" => {
                let value: LitStr =
                    parse_value(input, &key, "a namespace base, as in `namespace = \"remq:{billing}\"`")?;
                if value.value().is_empty() {
                    return Err(syn::Error::new(value.span(), "the `namespace` must not be empty"));
                }
                set_once(&mut self.namespace, &key, value)
            }
            _ => Err(syn::Error::new(
                key.span(),
                format!("unknown option `{key}`; known options: {}", known_options()),
            )),
        }
    }
}

/// The known options, as `` `a`, `b` ``.
fn known_options() -> String {
    Options::KNOWN.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// Parses `= value` after the option `key`, `expected` describing the value.
fn parse_value<T: Parse>(input: ParseStream<'_>, key: &Ident, expected: &str) -> syn::Result<T> {
    input.parse::<Token![=]>().map_err(|e| {
        syn::Error::new(e.span(), format!("expected `=` after `{key}`: the option `{key}` takes {expected}"))
    })?;
    input.parse().map_err(|e| syn::Error::new(e.span(), format!("the option `{key}` takes {expected}")))
}

/// Stores an option's value, or points at `key` when the option was given before.
fn set_once<T>(slot: &mut Option<T>, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(key.span(), format!("duplicate option `{key}`: give it once")));
    }
    *slot = Some(value);
    Ok(())
}

/// Checks that the function can be a handler: async, free (no `self`), not
/// generic. Every problem found is reported, each on its own tokens.
fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    // In the order of the tokens, so the errors read top to bottom.
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new(constness.span, "a remq handler cannot be a `const fn`"));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(unsafety.span, "a remq handler cannot be an `unsafe fn`"));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(abi, "a remq handler cannot have an `extern` ABI"));
    }
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "a remq handler must be an `async fn`\nhelp: make it `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a remq handler cannot be generic: the registry needs one concrete function\n\
             help: use concrete argument types, e.g. `Json<Event>` rather than `Json<T>`",
        ));
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "a remq handler cannot take `self`: it must be a free function\n\
                 help: move it out of the `impl` block and take what it needs as extractors, e.g. `State<T>`",
            )),
            FnArg::Typed(arg) if contains_impl_trait(arg.ty.to_token_stream()) => {
                errors.push(syn::Error::new_spanned(
                    &arg.ty,
                    "a remq handler cannot take `impl Trait` arguments: \
                     the registry needs one concrete function",
                ));
            }
            FnArg::Typed(_) => {}
        }
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(variadic, "a remq handler cannot be variadic"));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "a remq handler cannot have a `where` clause: the registry needs one concrete function",
        ));
    }
    errors
        .into_iter()
        .reduce(|mut all, e| {
            all.combine(e);
            all
        })
        .map_or(Ok(()), Err)
}

/// Whether a type mentions `impl Trait` anywhere (an anonymous generic).
fn contains_impl_trait(tokens: TokenStream2) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => contains_impl_trait(group.stream()),
        _ => false,
    })
}

/// The function unchanged, the extractor checks of its arguments, and its
/// registration with the inventory.
fn registration(args: &HandlerArgs, function: &ItemFn) -> TokenStream2 {
    let ident = &function.sig.ident;
    let pattern = &args.pattern;
    let name = match &args.options.name {
        Some(name) => name.to_token_stream(),
        None => {
            let fn_name = ident.unraw().to_string();
            quote! { ::core::concat!(::core::module_path!(), "::", #fn_name) }
        }
    };
    // One assertion per argument, spanned on its type so that an argument that
    // is not an extractor gets its error there.
    let assertions = function.sig.inputs.iter().filter_map(|input| match input {
        FnArg::Typed(arg) => {
            let ty = &arg.ty;
            Some(quote_spanned! {ty.span()=>
                ::remq::__private::assert_from_message::<#ty>();
            })
        }
        FnArg::Receiver(_) => None,
    });
    let erase = quote_spanned! {ident.span()=> ::remq::__private::erase(#ident) };
    // `HandlerOptions` is non-exhaustive: its `const` setters build it.
    let o = &args.options;
    let setters = [
        o.retries.map(|r| quote! { .retries(#r) }),
        o.timeout.map(|ms| quote! { .timeout(::core::time::Duration::from_millis(#ms)) }),
        o.timeout_permanent.map(|b| quote! { .timeout_permanent(#b) }),
        o.dead_letter.as_ref().map(|c| quote! { .dead_letter(#c) }),
        o.concurrency.map(|n| quote! { .concurrency(#n) }),
        o.rate_limit.map(|n| quote! { .rate_limit(#n) }),
        o.namespace.as_ref().map(|ns| quote! { .namespace(#ns) }),
    ]
    .into_iter()
    .flatten();
    quote! {
        #function

        const _: () = {
            #[allow(dead_code)]
            fn __remq_handler_arguments_are_extractors() {
                #(#assertions)*
            }

            ::remq::__private::inventory::submit! {
                ::remq::__private::Registration {
                    pattern: #pattern,
                    name: #name,
                    make: || #erase,
                    options: ::remq::__private::HandlerOptions::DEFAULT #(#setters)*,
                }
            }
        };
    }
}
