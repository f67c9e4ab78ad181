// The page under test: the OpenFeature web SDK with its OFREP provider, as an application on
// another origin would use them. Bundled by run.mjs with esbuild; driven through `window`.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const events = [];

window.startFlags = async ({ baseUrl, apiKey, environment, pollInterval }) => {
  OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
    events.push({ type: 'configuration_changed', flags: details?.flagsChanged ?? null });
  });
  OpenFeature.addHandler(ProviderEvents.Error, (details) => {
    events.push({ type: 'error', message: details?.message ?? null });
  });
  await OpenFeature.setContext({ targetingKey: 'browser-user', email: 'dev@example.com' });
  const provider = new OFREPWebProvider({
    baseUrl,
    headers: [
      ['Authorization', `Bearer ${apiKey}`],
      ['X-Environment', environment],
    ],
    pollInterval,
    changeDetection: 'polling',
    cacheMode: 'disabled',
    timeoutMs: 5000,
  });
  try {
    await OpenFeature.setProviderAndWait(provider);
    return { ok: true };
  } catch (e) {
    return { ok: false, error: String(e?.message ?? e) };
  }
};

window.readFlags = () => {
  const client = OpenFeature.getClient();
  const detail = (d) => ({ value: d.value, reason: d.reason, variant: d.variant ?? null, errorCode: d.errorCode ?? null });
  return {
    'new-dashboard': detail(client.getBooleanDetails('new-dashboard', false)),
    greeting: detail(client.getStringDetails('greeting', 'fallback')),
    'max-items': detail(client.getNumberDetails('max-items', -1)),
  };
};

window.flagEvents = () => events.slice();
