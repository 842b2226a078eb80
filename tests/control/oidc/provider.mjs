// A real OpenID Provider (panva/oidc-provider, certified by the OpenID Foundation) for the control plane's
// OIDC login tests: the tests run this, not an imitation of a provider.
//
// Usage: node provider.mjs '<settings JSON>'
//   settings: {"client_id", "client_secret", "redirect_uri", "accounts": {"<sub>": {<claims>}, ...}}
// It listens on 127.0.0.1 and a free port, then prints one line, {"issuer": "http://127.0.0.1:<port>"}, and
// serves until it is terminated.
//
// Logging in needs no person: the interaction page completes itself. The login prompt signs in the account
// named by the authorization request's `login_hint` (the first account when there is none or it is unknown
// to the provider), and the consent prompt grants what the client asked for.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const settings = JSON.parse(process.argv[2]);
const accounts = settings.accounts;
const firstAccount = Object.keys(accounts)[0];

const server = http.createServer();
await new Promise((resolve) => {
  server.listen(0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-signing-key', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: settings.client_id,
      client_secret: settings.client_secret,
      redirect_uris: [settings.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Profile claims go into the ID token as well as the userinfo endpoint (as many providers do).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    if (!Object.hasOwn(accounts, sub)) {
      return undefined;
    }
    return { accountId: sub, claims: async () => ({ ...accounts[sub], sub }) };
  },
});

provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !/^\/interaction\/[^/]+$/.test(ctx.path)) {
    await next();
    return;
  }
  const { prompt, params, session, grantId } = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (prompt.name === 'login') {
    const hinted = params.login_hint;
    const accountId = hinted && Object.hasOwn(accounts, hinted) ? hinted : firstAccount;
    result = { login: { accountId } };
  } else {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) {
      grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    }
    if (prompt.details.missingOIDCClaims) {
      grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    }
    result = { consent: { grantId: await grant.save() } };
  }
  ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true }));
});

server.on('request', provider.callback());
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
