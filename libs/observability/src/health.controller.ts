import { Controller, Get, ServiceUnavailableException } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { ReadinessRegistry } from './readiness.registry';

@ApiExcludeController()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly readiness: ReadinessRegistry,
  ) {}

  /** The process answers: restart it if not. Checks no dependency on purpose. */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([async () => this.indicators.check('process').up({ uptime: process.uptime() })]);
  }

  /** Every dependency this service needs to do its job answers. */
  @Get('ready')
  @HealthCheck()
  async ready() {
    const { ready, checks } = await this.readiness.evaluate();
    const result = await this.health.check(
      Object.entries(checks).map(([name, state]) => async () => {
        const indicator = this.indicators.check(name);
        return state === 'up' ? indicator.up() : indicator.down();
      }),
    );
    if (!ready) throw new ServiceUnavailableException(result);
    return result;
  }
}
