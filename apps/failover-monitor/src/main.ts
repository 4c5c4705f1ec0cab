import { monitorEnvironmentSchema, validateEnvironment } from '@shortener/config';
import { exitOnStartFailure, startService } from '@shortener/observability';
import { MonitorModule } from './monitor.module';

async function main(): Promise<void> {
  const config = validateEnvironment(monitorEnvironmentSchema, process.env);
  await startService({
    name: 'failover-monitor',
    module: MonitorModule.forRoot(config),
    http: { host: config.HTTP_HOST, port: config.HTTP_PORT },
  });
}

main().catch(exitOnStartFailure('failover-monitor'));
